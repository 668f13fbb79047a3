"""The states of a point, shared by the node (state.json), the backends and the manifest.

A ``str`` enum: a state compares equal to its name, and JSON files hold the plain name, so
manifests and state files written before this module existed read the same.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    PLANNED = "PLANNED"              # written to the manifest, not submitted
    SUBMITTED = "SUBMITTED"          # handed to a backend that reports nothing yet (ctl)
    PENDING = "PENDING"              # queued by the scheduler
    RUNNING = "RUNNING"
    REQUEUED = "REQUEUED"            # the node saved a checkpoint after USR2 and stopped
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"          # stopped with a checkpoint and not requeued: running it again resumes
    UNKNOWN = "UNKNOWN"              # no scheduler record and no final state from the node

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_active(self) -> bool:
        """Queued or running: a launch leaves it alone."""
        return self in ACTIVE

    @property
    def is_terminal(self) -> bool:
        """It never changes again (unless the point is submitted again)."""
        return self in TERMINAL

    @property
    def mlflow_status(self) -> str | None:
        """The MLflow run status of a point that ended in this state (None while it has not)."""
        if not self.is_terminal and self is not State.UNKNOWN:
            return None
        return {State.COMPLETED: "FINISHED", State.FAILED: "FAILED", State.OUT_OF_MEMORY: "FAILED"}.get(self, "KILLED")

    @classmethod
    def from_mlflow(cls, status: str) -> "State":
        """A run status in the tool's words (for runs the manifest does not know)."""
        return {"FINISHED": cls.COMPLETED, "FAILED": cls.FAILED, "KILLED": cls.CANCELLED, "RUNNING": cls.RUNNING,
                "SCHEDULED": cls.PENDING}.get(status, cls.UNKNOWN)


ACTIVE = (State.PENDING, State.RUNNING, State.REQUEUED, State.SUBMITTED)
TERMINAL_FAILED = (State.FAILED, State.CANCELLED, State.TIMEOUT, State.OUT_OF_MEMORY, State.NODE_FAIL,
                   State.PREEMPTED)
TERMINAL = (State.COMPLETED, *TERMINAL_FAILED)
# A state read from a file is a plain name: ``name in ACTIVE`` (or TERMINAL) asks without making
# a State of it, which counts for 10,000 points.
