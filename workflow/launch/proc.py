"""Reading a program the launcher started: its answer within a time limit, or none."""

from __future__ import annotations

import subprocess


def communicate(proc: subprocess.Popen, timeout_s: float, text: str | None = None) -> tuple[str, str] | None:
    """``proc``'s output and error once it ends (``text``: what it reads on stdin); None when it
    does not end within ``timeout_s``: it is then killed and reaped, so no process is left behind."""
    try:
        return proc.communicate(text, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
