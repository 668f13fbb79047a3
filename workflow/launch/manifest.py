"""The sweep manifest: ``runs/<sweep>/manifest.json``, the record every lifecycle command reads.

It maps each point hash to its run directory, state, backend job id and MLflow run id.
Writes are atomic (temp file + rename); a lock file keeps two launches of one sweep apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from workflow.errors import ManifestError, Problem
from workflow.failures import of_point
from workflow.jsonio import read_json, write_json
from workflow.paths import runs_dir
from workflow.rundir import RunDir
from workflow.states import ACTIVE, State

PARENT_FILE = "parent.json"  # beside the manifest: the parent run, as its registering helper created it
# Beside the manifest, written with it: the job ids that status asks the scheduler about
# (``Manifest.polled``), by backend. Much smaller than the manifest: status starts its queries
# from it before it loads the rest of the command line.
POLLED_FILE = "polled.json"


@dataclass
class PointRecord:
    index: int
    name: str
    hash: str
    run_dir: str
    state: str = State.PLANNED
    backend: Optional[str] = None
    job_id: Optional[str] = None
    mlflow_run_id: Optional[str] = None
    submitted_at: Optional[float] = None
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    error: Optional[str] = None
    cause: Optional[str] = None     # why it failed (workflow.failures.Cause), None while it has not
    where: Optional[str] = None     # the file:line its exception was raised at, when it raised one
    attempt: int = 1                # submissions of the point: 2 once it was resubmitted after a failure
    commit: Optional[str] = None    # git commit of the code it was submitted with
    code: Optional[str] = None      # the code snapshot its job runs
    extra: dict = field(default_factory=dict)

    @property
    def rundir(self) -> RunDir:
        return RunDir(Path(self.run_dir))

    def settle_cause(self, node: dict | None = None) -> None:
        """Name why the point failed, from its state and ``node`` (the job's record; default: the
        status index's, else its run folder's)."""
        cause, self.where = of_point(self.state, self.node if node is None else node)
        self.cause = cause.value if cause else None

    @property
    def node(self) -> dict:
        """What the job reported (state, times, error, MLflow run): from the sweep's status
        index, else (a sweep launched before the index) from its run folder."""
        return self.extra.get("node") or self.rundir.read_state()


@dataclass
class Manifest:
    sweep: str
    file: str
    sweep_id: str = field(default_factory=lambda: os.urandom(6).hex())  # 48 random bits, as uuid4().hex[:12]
    created_at: float = field(default_factory=time.time)
    tracking_uri: Optional[str] = None
    experiment: Optional[str] = None
    experiment_id: Optional[str] = None
    parent_run_id: Optional[str] = None
    parent_closed: bool = False
    events_offset: int = 0  # how much of the sweep's status index (events.jsonl) has been applied
    points: dict[str, PointRecord] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return sweep_dir(self.sweep) / "manifest.json"

    def save(self) -> None:
        """One line of JSON (the C encoder: a 10,000-point manifest is saved at every status,
        and after each array a submission sends), its keys in the order of the fields and the
        points in the order they were recorded (sweep order, which ``ordered`` then sorts in
        one pass); then the job ids status will ask about (``POLLED_FILE``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "points"}
        data["points"] = {h: vars(r) for h, r in self.points.items()}
        write_json(self.path, data, indent=None, sort_keys=False)
        polled = {name: job_ids(records) for name, records in self.polled().items()}
        write_json(self.path.parent / POLLED_FILE, polled, indent=None, sort_keys=False)

    def polled(self) -> dict[str, list[PointRecord]]:
        """The points each backend is asked about: the active ones, and UNKNOWN ones with a job id
        (the scheduler had no record, e.g. sacct lagging behind a scancel), which are asked again."""
        by_backend: dict[str, list[PointRecord]] = {}
        for record in self.points.values():
            if record.backend and (record.state in ACTIVE or (record.state == State.UNKNOWN and record.job_id)):
                by_backend.setdefault(record.backend, []).append(record)
        return by_backend

    def adopt_parent(self) -> bool:
        """Take the parent run from ``parent.json`` once its helper has written it (submission
        does not wait for it); True if it was taken."""
        if self.parent_run_id:
            return False
        reply = read_json(self.path.parent / PARENT_FILE)
        if not reply.get("parent_run_id"):
            return False
        self.parent_run_id, self.experiment_id = reply["parent_run_id"], reply["experiment_id"]
        return True

    def state_counts(self) -> dict[str, int]:
        """{state: number of points}, by state name."""
        return {str(k): v for k, v in sorted(Counter(r.state for r in self.points.values()).items())}

    def cause_counts(self) -> dict[str, int]:
        """{cause: number of failed points}, most first."""
        return dict(Counter(r.cause for r in self.points.values() if r.cause).most_common())

    def ordered(self, records: Iterable[PointRecord] | None = None) -> list[PointRecord]:
        """The points (or ``records``, a few of them: cheaper than sorting all) in sweep order."""
        return sorted(self.points.values() if records is None else records, key=attrgetter("index", "hash"))


def place(points: Iterable[tuple[int, str, str]], manifest: Manifest | None,
          added: Sequence[str] = ()) -> dict[str, tuple[int, str]]:
    """Where a sweep's points go in its manifest: each ``(index, name, hash)`` the expansion
    made, as ``{hash: (index, name)}``, unique within the sweep's manifest.

    A point already recorded keeps its recorded index and name. A new point keeps the ones its
    expansion gave it where no other point holds them. Else it takes the next free index (one
    past the highest in use), and a name that differs from every other: its name with the
    command line's overrides that made it added (``train_batch_size=8,train.seed=5``; for a
    point that sets nothing itself, ``train.seed=5``), or, where none were given or that name is
    taken too, with its hash prefix (``mymax@1a2b3c4d``)."""
    records = manifest.points if manifest else {}
    indices = {r.index for r in records.values()}
    names = {r.name for r in records.values()}
    placed: dict[str, tuple[int, str]] = {}
    for index, name, digest in points:
        if digest in records:
            placed[digest] = (records[digest].index, records[digest].name)
            continue
        if index in indices:
            index = max(indices) + 1
        if name in names:
            name = _free_name(name, digest, added, names)
        indices.add(index)
        names.add(name)
        placed[digest] = (index, name)
    return placed


def _free_name(name: str, digest: str, added: Sequence[str], names: set[str]) -> str:
    """``place``'s name for a new point whose name another point holds."""
    with_added = ",".join([name, *added] if name != "default" else added)
    if added and with_added not in names:
        return with_added
    return f"{with_added if added else name}@{digest[:8]}"


def job_ids(records: Iterable[PointRecord]) -> list[str]:
    """The scheduler's ids of these records' jobs (records never submitted have none)."""
    return [r.job_id for r in records if r.job_id]


def sweep_dir(sweep: str) -> Path:
    return runs_dir() / sweep


def load(sweep: str) -> Manifest:
    path = sweep_dir(sweep) / "manifest.json"
    if not path.is_file():
        known = ", ".join(known_sweeps()) or "none yet"
        raise ManifestError(f"No sweep named '{sweep}'",
                            [Problem(str(path), None, "an existing sweep manifest", "no such file",
                                     f"known sweeps: {known}")])
    try:
        data = json.loads(path.read_text())
        points = {h: _record(rec) for h, rec in data.pop("points").items()}
        return Manifest(points=points, **data)
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ManifestError(f"Corrupt manifest {path}", [Problem(str(path), None, "a manifest", str(exc))]) from None


_FIELDS = {f.name: f for f in fields(PointRecord)}
_REQUIRED = frozenset(n for n, f in _FIELDS.items() if f.default is MISSING and f.default_factory is MISSING)
_DEFAULTS = {n: f.default for n, f in _FIELDS.items() if f.default is not MISSING}


def _record(saved: dict) -> PointRecord:
    """``PointRecord(**saved)`` without the dataclass's ``__init__`` (status reads one per
    point): the same defaults, and a TypeError for a missing or unknown field."""
    if not isinstance(saved, dict) or not _REQUIRED <= saved.keys() <= _FIELDS.keys():
        raise TypeError(f"a point record with fields {sorted(saved)}")
    record = object.__new__(PointRecord)
    record.__dict__ = {**_DEFAULTS, **saved}
    if "extra" not in saved:
        record.extra = {}
    return record


def load_or_new(sweep: str, file: str) -> Manifest:
    path = sweep_dir(sweep) / "manifest.json"
    return load(sweep) if path.is_file() else Manifest(sweep=sweep, file=file)


def known_sweeps() -> list[str]:
    root = runs_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/manifest.json"))


@contextmanager
def locked(sweep: str) -> Iterator[None]:
    """Hold the sweep's launch lock; a second concurrent launch fails at once."""
    folder = sweep_dir(sweep)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / ".lock"
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ManifestError(f"Sweep '{sweep}' is being launched by {holder}",
                                [Problem(str(lock_path), None, "no concurrent launch of the same sweep",
                                         "the lock is held", "wait for it to finish, then re-run")]) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
