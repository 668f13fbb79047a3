"""The backend interface. Every backend turns a plan into a request (a value that a dry run
prints), submits that same request, and reads back or cancels the jobs it made."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional

from workflow.manifest import Manifest, PointRecord

if TYPE_CHECKING:  # annotations only: status and cancel never load the spec machinery
    from workflow.plan import Plan
    from workflow.sweep import Point

# on_event(kind, record): kind is "submitted", "started" or "finished".
EventHook = Callable[[str, PointRecord], None]


@dataclass(frozen=True)
class JobState:
    state: str
    job_id: Optional[str] = None
    elapsed_s: Optional[float] = None
    reason: Optional[str] = None


class Request(ABC):
    """What a backend will do, as data. ``describe()`` is what --dry_run prints."""

    @abstractmethod
    def describe(self) -> str: ...

    def point_tags(self, digest: str) -> dict:
        """Backend-specific MLflow tags of one point (e.g. the ctl job name)."""
        return {}


class Backend(ABC):
    name: str
    waits: bool = False  # True: submit() returns only when every point has ended (local)

    def preflight(self) -> None:
        """Raise BackendError if this backend cannot submit from here (checked before any write)."""

    @abstractmethod
    def render(self, plan: Plan, points: list[Point]) -> Request:
        """Pure: build the request for these points; raise BackendError if it cannot be met."""

    @abstractmethod
    def submit(self, request: Request, manifest: Manifest, on_event: EventHook) -> None:
        """Send the request; record job ids and states in the manifest's point records."""

    @abstractmethod
    def poll(self, records: list[PointRecord]) -> dict[str, JobState]:
        """Current state of each record's job, keyed by point hash."""

    @abstractmethod
    def cancel(self, records: list[PointRecord]) -> list[str]:
        """Cancel the jobs of these records; returns the hashes cancelled."""
