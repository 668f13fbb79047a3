"""``logs <sweep> --follow`` through the real CLI, on a manifest and a log that the test writes
(no training): it prints what the log gains, ends when the point ends, and Ctrl-C ends it
without a traceback."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from helpers import ROOT

from workflow.launch.manifest import Manifest, PointRecord
from workflow.rundir import RunDir
from workflow.states import State

WAIT_S = 60  # at most, for a line to show (the CLI reads the log twice a second)


def running_point(env: dict, monkeypatch) -> RunDir:
    """A sweep "follow" of one local point RUNNING as this test's process (alive), its log begun."""
    monkeypatch.setenv("WF_RUNS_DIR", env["WF_RUNS_DIR"])
    manifest = Manifest("follow", "follow.yaml")
    rd = RunDir(manifest.path.parent / "p0-00000000")
    rd.root.mkdir(parents=True)
    rd.log.write_text("loading the model\n")
    manifest.points["a" * 12] = PointRecord(0, "p0", "a" * 12, str(rd.root), state=State.RUNNING,
                                            backend="local", job_id=f"local:{os.getpid()}")
    manifest.save()
    rd.write_state(state=State.RUNNING)
    return rd


class Follow:
    """``launch.py logs follow --follow`` running, its output read line by line as it comes."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, "launch.py", "logs", "follow", "--follow"], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str) -> None:
        while not any(text in line for line in self.seen):
            line = self.lines.get(timeout=WAIT_S)
            assert line is not None, ("the follow ended before", text, self.seen)
            self.seen.append(line)

    def end(self) -> int:
        code = self.proc.wait(timeout=WAIT_S)
        while (line := self.lines.get(timeout=WAIT_S)) is not None:
            self.seen.append(line)
        return code


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_follow_prints_the_new_lines_and_ends_with_the_point(env, monkeypatch):
    rd = running_point(env, monkeypatch)
    follow = Follow(env)
    follow.wait_for("loading the model")
    append(rd.log, "step 10/20 loss 3.2\n")
    follow.wait_for("step 10/20 loss 3.2")
    append(rd.log, "step 20/20 loss 2.9\npoint done\n")
    rd.write_state(state=State.COMPLETED)
    assert follow.end() == 0, follow.seen
    text = "\n".join(follow.seen)
    assert "point done" in text and "Traceback" not in text
    assert text.index("loading the model") < text.index("step 10/20") < text.index("point done")


def test_ctrl_c_ends_the_follow_without_a_traceback(env, monkeypatch):
    running_point(env, monkeypatch)
    follow = Follow(env)
    follow.wait_for("loading the model")
    follow.proc.send_signal(signal.SIGINT)
    assert follow.end() == 0, follow.seen
    assert "Traceback" not in "\n".join(follow.seen) and "cancelled" not in "\n".join(follow.seen)
