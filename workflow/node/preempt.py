"""Preemption requests: a signal handler sets a flag; training saves at the next step boundary,
stops, and the job is requeued. No heavy imports: the node sets it up before torch loads."""

from __future__ import annotations

import signal
from typing import Callable, Optional


class Preempted(Exception):
    """Raised after a checkpoint was saved because the job must stop (preemption or time limit)."""


class PreemptionFlag:
    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.previous: Optional[Callable] = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self, signum: int = signal.SIGUSR2) -> None:
        """Replace the handler of ``signum`` (keeping the old one to call after saving)."""
        self.previous = signal.getsignal(signum)
        signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum


FLAG = PreemptionFlag()
