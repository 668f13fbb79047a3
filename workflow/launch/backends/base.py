"""The backend interface, after TorchX's schedulers: ``render`` builds the request (a value that
the dry run prints), ``schedule`` sends that same request, ``poll`` and ``cancel`` act on the
jobs it made. Backends report what happened to each point; only the launcher records it in
the manifest."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from workflow.errors import BackendError, Problem
from workflow.launch.early import Started
from workflow.states import State

if TYPE_CHECKING:  # annotations only: status and cancel never load the spec machinery
    from workflow.launch.manifest import PointRecord
    from workflow.launch.plan import Plan
    from workflow.launch.sweep import Point, Sweep


@dataclass(frozen=True)
class JobState:
    state: State
    job_id: Optional[str] = None
    elapsed_s: Optional[float] = None
    error: Optional[str] = None
    nodes: Optional[str] = None  # the nodes the job runs or ran on, as the scheduler lists them


# report({point hash: JobState}): the backend's news about some points (queued, started, ended).
Report = Callable[[dict[str, JobState]], None]


class Request(ABC):
    """What a backend will do, as data. ``describe()`` is what --dry_run prints."""

    @abstractmethod
    def describe(self) -> str: ...


def refuse(title: str, problems: list[Problem]) -> None:
    if problems:
        raise BackendError(title, problems)


class Backend(ABC):
    name: str
    waits: bool = False  # True: schedule() returns only when every point has ended (local)
    # True: schedule() hands each job its job.json content, which the job writes into its run
    # directory when it starts (SLURM: in submitit's pickle); else the launcher writes the files.
    carries_job: bool = False

    def __init__(self, started: Started | None = None) -> None:
        """``started``: the command's programs started early, where the backend asks the cluster
        (each question once per command); None: each call asks anew."""
        self.started = started

    def asking(self) -> Started:
        """Where this call asks the cluster: the command's ``started``, else a new one."""
        return self.started or Started()

    def preflight(self) -> None:
        """Raise BackendError if this backend cannot submit from here (checked before any write)."""

    def rules(self, sweep: Sweep) -> list[Problem]:
        """What this backend can never run, known from the sweep alone (no cluster is asked):
        ``validate``, ``plan`` and the dry run report these too; ``render`` refuses the same."""
        return []

    def problems(self, file: str, points: list[Point]) -> list[Problem]:
        """What this backend cannot run (cluster limits, missing settings), reported with the
        input's other problems; ``render`` refuses the same."""
        return []

    @abstractmethod
    def render(self, plan: Plan, points: list[Point]) -> Request:
        """Pure: build the request for these points; raise BackendError if it cannot be met."""

    @abstractmethod
    def schedule(self, request: Request, report: Report, jobs: dict[str, dict]) -> None:
        """Send the request, reporting each point's job id and state. ``jobs``: each point's
        job.json content by point hash (already in its run directory unless ``carries_job``)."""

    @abstractmethod
    def poll(self, records: list[PointRecord]) -> dict[str, JobState]:
        """Current state of each record's job, keyed by point hash."""

    @abstractmethod
    def cancel(self, records: list[PointRecord]) -> list[str]:
        """Cancel the jobs of these records; returns the hashes cancelled."""
