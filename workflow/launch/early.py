"""What a command starts early: the programs whose answers it will wait for, started side by
side while it does other work.

The command line makes one ``Started`` per command and starts in it what that command will ask
(``sweep`` and ``run``: the code snapshot's git commands; ``status``: squeue and sacct), then
passes it to the code that reads the answers (``snapshot.take``, ``lifecycle.status``, the plan
and the backends), which start there whatever is not started yet. Each program runs once per
``Started``: its answer is kept, so the plan's check of the cluster's limits and the request
rendered after it read one scontrol. A question that needs a new answer (a second poll) goes
through a new ``Started``; code given none makes its own.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from workflow.launch.proc import communicate

Argv = tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    returncode: int | None  # None: no answer within the time limit (the program was killed)
    out: str = ""
    err: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Started:
    """Programs started by their command line (an argv tuple), and the answers read from them."""

    def __init__(self) -> None:
        self._running: dict[Argv, subprocess.Popen] = {}
        self._answers: dict[Argv, Answer] = {}

    def start(self, *argvs: Argv, cwd=None, env: dict | None = None) -> None:
        """Start these programs now, side by side (``env``: variables added to the environment).
        One already started or answered is left as it is; one that cannot start (not installed)
        is left for ``answer``, which raises that error."""
        for argv in argvs:
            if argv in self._running or argv in self._answers:
                continue
            try:
                self._running[argv] = _popen(argv, cwd, env)
            except OSError:
                continue

    def answer(self, argv: Argv, timeout_s: float, cwd=None, env: dict | None = None) -> Answer:
        """The program's answer: read from the one started, else from one run now (OSError when
        it cannot start). Kept: the next ``answer`` of the same program is this one."""
        if argv not in self._answers:
            proc = self._running.pop(argv, None) or _popen(argv, cwd, env)
            read = communicate(proc, timeout_s)
            self._answers[argv] = Answer(proc.returncode, *read) if read else Answer(None)
        return self._answers[argv]

    def close(self) -> None:
        """Kill and reap the programs whose answers were never read (the command ended first)."""
        while self._running:
            proc = self._running.popitem()[1]
            proc.kill()
            proc.communicate()

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _popen(argv: Argv, cwd, env: dict | None) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env} if env else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
