"""A local job preempted with USR2 and run again: shared by the CPU test and the GPU test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import ROOT, run_cli


@dataclass
class Preempted:
    first: dict        # manifest record after the USR2
    second: dict       # manifest record after the re-run
    first_state: dict  # state.json after the USR2
    log: str
    launcher_rc: int


def preempt_then_resume(env: dict, runs: Path, spec: str, *args: str, at_step: int, timeout: float = 600
                        ) -> Preempted:
    """``launch.py run spec args`` on the local backend; USR2 to the job once the log shows
    ``at_step``; then the same command again, which must resume from the saved checkpoint."""
    argv = [sys.executable, "launch.py", "run", spec, *args]
    launcher = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sweep = runs / Path(spec).stem
    record = _wait(lambda: _only_record(sweep), timeout)
    run_dir = Path(record["run_dir"])
    _wait(lambda: (run_dir / "log.txt").is_file() and f"step {at_step}/" in (run_dir / "log.txt").read_text(),
          timeout, launcher)
    os.kill(json.loads((run_dir / "state.json").read_text())["pid"], signal.SIGUSR2)
    output, _ = launcher.communicate(timeout=timeout)
    first = _only_record(sweep)
    first_state = json.loads((run_dir / "state.json").read_text())
    again = run_cli("run", spec, *args, env=env, timeout=int(timeout))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    return Preempted(first, _only_record(sweep), first_state, (run_dir / "log.txt").read_text(), launcher.returncode)


def _only_record(sweep: Path) -> dict | None:
    try:
        points = json.loads((sweep / "manifest.json").read_text())["points"]
    except (OSError, json.JSONDecodeError, KeyError):
        return None
    return next(iter(points.values()), None)


def _wait(predicate, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job ended before it could be preempted:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the job")
