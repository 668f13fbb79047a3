"""Lifecycle commands that work after the launcher exited, from the manifest alone:
status, logs, cancel, and the results of a sweep (read from run directories, no MLflow)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

from workflow.errors import ManifestError, Problem, WorkflowError, suggest
from workflow.launch import backends, manifest as manifests
from workflow.launch.early import Started
from workflow.launch.manifest import Manifest, PointRecord
from workflow.metrics import LIVE, best_first, primary_metric, table_metrics
from workflow.jsonio import read_json, read_lines_from
from workflow.rundir import EVENT_FIELDS, EVENTS, RunDir
from workflow.study import SEARCH_FILE
from workflow.states import TERMINAL_FAILED, State
from workflow.tree import flatten

SHOWN_ROWS = 40  # a table of more points shows a part (status: the count by state and the rows that need a look)


def apply_events(manifest: Manifest) -> bool:
    """What the jobs posted to the sweep's status index since the last read: per point, the
    node's state and times, its error, its MLflow run, its step and latest metric."""
    rows, offset = read_lines_from(manifest.path.parent / EVENTS, manifest.events_offset)
    if offset == manifest.events_offset:
        return False
    by_dir = {Path(r.run_dir).name: r for r in manifest.points.values()}
    for row in rows:
        record = by_dir.get(row.get("dir"))
        if record is None:
            continue  # a folder of another manifest version (renamed point)
        if "step" in row:
            record.extra["step"], record.extra["metric"] = row["step"], row.get("metric")
        node = record.extra.setdefault("node", {})
        node.update({k: v for k, v in row.items() if k in EVENT_FIELDS})
        if row.get("mlflow_run_id"):
            record.mlflow_run_id = row["mlflow_run_id"]
    manifest.events_offset = offset
    return True


def refresh(manifest: Manifest, started: Started | None = None) -> Manifest:
    """Apply the jobs' news from the status index, then ask each backend (once for all its
    points) for the state of active points, and of points it could not account for before.
    ``started``: where the command started the backends' queries (``start_queries``)."""
    changed = manifest.adopt_parent() | apply_events(manifest)
    for name, records in manifest.polled().items():
        for digest, job in backends.get(name, started).poll(records).items():
            record = manifest.points[digest]
            if job.elapsed_s is not None and record.extra.get("elapsed_s") != job.elapsed_s:
                record.extra["elapsed_s"], changed = job.elapsed_s, True
            if job.nodes and record.extra.get("nodes") != job.nodes:  # retries.NODES: what a retry excludes
                record.extra["nodes"], changed = job.nodes, True
            if job.state != record.state:
                record.state, changed = job.state, True
                if not job.state.is_active:
                    record.ended_at = record.ended_at or time.time()
                    record.error = record.error or record.node.get("error")
                    record.settle_cause()
    if changed:
        manifest.save()
    return manifest


def start_queries(sweep: str, started: Started) -> None:
    """Start the scheduler's queries of a ``status`` of the sweep now, for the job ids the
    manifest's last save left beside it (launch.py calls this before it loads the rest of the
    command line, which takes about as long as squeue and sacct). Anything unexpected (no such
    sweep, a torn file) is left for ``status``, which asks itself."""
    try:
        job_ids = read_json(manifests.sweep_dir(sweep) / manifests.POLLED_FILE).get("slurm")
    except (WorkflowError, AttributeError):
        return
    if job_ids and isinstance(job_ids, list):
        from workflow.launch.backends import slurm

        slurm.start_status_queries(started, job_ids)


def status(sweep: str, notify: Callable[[str], None] | None = None, show_all: bool = False,
           started: Started | None = None) -> tuple[Manifest, list[dict], list[str]]:
    """The sweep's manifest brought up to date, the rows of the points its table shows
    (``shown_points``), and MLflow warnings (status also reconciles MLflow with the manifest;
    ``notify`` hears of a long reconcile). ``started``: see ``start_queries``."""
    from workflow.launch import mlflow_client

    manifest = refresh(manifests.load(sweep), started)
    warnings = mlflow_client.reconcile(manifest, notify=notify)
    retried = _retried(manifest, started)
    if retried:
        manifest, warnings = manifests.load(sweep), warnings + retried
    if (manifest.path.parent / SEARCH_FILE).is_file():  # a search: the study's trials and its best
        from workflow.launch import search

        warnings += search.reconcile(manifest)
    return manifest, status_rows(manifest, shown_points(manifest, show_all)), warnings


def _retried(manifest: Manifest, started: Started | None = None) -> list[str]:
    """Resubmit the failed points whose spec's ``retry`` block covers their cause (``retries``).
    The spec machinery is loaded only when a failure has not been judged yet."""
    if not any(retry_candidate(r) for r in manifest.points.values()):
        return []
    from workflow.launch import driver

    return driver.resubmit_due(manifest, started)


NOT_RETRIED = "not_retried"  # record.extra: the attempt whose failure no retry block covers (judged once)


def retry_candidate(record: PointRecord) -> bool:
    """A scheduler's point (local ones are retried by their sweep) that failed with a cause, in an
    attempt that was not judged before."""
    return (record.backend != "local" and record.state in TERMINAL_FAILED and bool(record.cause)
            and record.extra.get(NOT_RETRIED) != record.attempt)


def sync(sweep: str, notify: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Reconcile every ended point with MLflow again; returns the point count and warnings."""
    from workflow.launch import mlflow_client

    manifest = refresh(manifests.load(sweep))
    return len(manifest.points), mlflow_client.reconcile(manifest, resend=True, notify=notify) + _retried(manifest)


def sweep_states() -> dict[str, dict[str, int]]:
    """Every known sweep with its count of points by state."""
    return {name: manifests.load(name).state_counts() for name in manifests.known_sweeps()}


def shown_points(manifest: Manifest, show_all: bool = False) -> list[PointRecord]:
    """The points a status table shows: every point of a sweep of at most SHOWN_ROWS (or with
    ``show_all``); of a larger one, the failed and then the running points (the others are
    counted by state)."""
    if show_all or len(manifest.points) <= SHOWN_ROWS:
        return manifest.ordered()
    points = manifest.points.values()
    return manifest.ordered(r for r in points if r.state in TERMINAL_FAILED) + \
        manifest.ordered(r for r in points if r.state == State.RUNNING)


def status_rows(manifest: Manifest, records: list[PointRecord] | None = None) -> list[dict]:
    """One row per point (``records``; default every point), from the manifest alone (the status
    index has been applied to it). A sweep launched before the index existed reads its run
    directories instead."""
    indexed = (manifest.path.parent / EVENTS).is_file()
    rows = []
    for record in manifest.ordered() if records is None else records:
        node = record.extra.get("node", {}) if indexed else record.rundir.read_state()
        step, metric = (record.extra.get("step"), record.extra.get("metric")) if indexed \
            else latest_metric(record.rundir)
        start, end = record.started_at or node.get("started_at"), record.ended_at or node.get("ended_at")
        elapsed = record.extra.get("elapsed_s")
        if elapsed is None and start:
            elapsed = max(0.0, (end or time.time()) - start)
        rows.append({"index": record.index, "name": record.name, "state": record.state, "job_id": record.job_id,
                     "elapsed_s": elapsed, "step": step, "metric": metric, "error": record.error or node.get("error"),
                     "cause": record.cause, "where": record.where, "attempt": record.attempt})
    return rows


def latest_metric(rd: RunDir) -> tuple[int | None, str | None]:
    """The last metric line of the point's spool (read from the end, cheaply)."""
    try:
        with rd.metrics.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("kind") == "metric" and row.get("key") in LIVE:
            return row["step"], f"{row['key']}={row['value']:.4g}"
    return None, None


def find_points(manifest: Manifest, point: str | None) -> list[PointRecord]:
    """All points when ``point`` is None; else the one it names (``resolve_point``)."""
    return manifest.ordered() if point is None else [resolve_point(manifest, point)]


def resolve_point(manifest: Manifest, point: str | int) -> PointRecord:
    """The point that ``point`` names: by its index (digits), else by its full name
    (``train_batch_size=32``), else by a prefix of its hash; the first of these that matches
    anything decides. More than one match (a manifest written before names and indices were
    unique, or a short hash prefix) is an error that lists them."""
    text, records = str(point), manifest.ordered()
    for how, found in (("index", [r for r in records if text.isdigit() and r.index == int(text)]),
                       ("name", [r for r in records if r.name == text]),
                       ("hash prefix", [r for r in records if r.hash.startswith(text)])):
        if len(found) == 1:
            return found[0]
        if found:
            raise ManifestError(f"Point '{text}' is ambiguous in sweep {manifest.sweep}", [Problem(
                str(manifest.path), "point", "one point: its hash prefix (at least 8 characters)",
                f"{len(found)} points with this {how}", "points: " + _listed(found))])
    raise ManifestError(f"No point '{text}' in sweep {manifest.sweep}",
                        [Problem(str(manifest.path), "points", "a point index, hash prefix or name", repr(text),
                                 suggest(text, [r.name for r in records]))])


def _listed(records: list[PointRecord]) -> str:
    return ", ".join(f"{r.index} {r.hash[:8]} {r.name}" for r in records)


def single_point(manifest: Manifest, point: str | None) -> PointRecord:
    found = find_points(manifest, point)
    if len(found) != 1:
        raise ManifestError(f"Name one point of sweep {manifest.sweep}", [Problem(
            str(manifest.path), "point", "one point (index, hash prefix or name)", f"{len(found)} points",
            "points: " + _listed(found))])
    return found[0]


def point_or_override(sweep: str | None, point: str | None, overrides: tuple) -> tuple[str | None, tuple]:
    """``predict <sweep> <point> [key=value ...]``: the positional after the sweep is a point,
    unless it holds ``=`` and is no point's full name: then it is the first override (``predict
    demo generate.num_beams=4`` names no point). A text that is both a point's name and a spec
    setting is an error that says how to give either."""
    text = None if point is None else str(point)
    if text is None or "=" not in text:
        return point, overrides
    named = sweep in manifests.known_sweeps() and [r for r in manifests.load(sweep).ordered() if r.name == text]
    if not named:
        return None, (text, *overrides)
    from workflow.spec import field_paths

    if text.split("=", 1)[0] in field_paths():
        raise ManifestError(f"'{text}' is both a point of sweep {sweep} and a setting", [Problem(
            "<command line>", "point", "a point, or a key=value setting after the point", repr(text),
            f"the point: give its index or hash ({_listed(named)}); the setting: name the point first")])
    return text, overrides


NO_LOG = "(no log yet)"
FOLLOW_POLL_S = 0.5  # logs --follow: how often the logs are read for new lines
FOLLOW_STATE_POLLS = 6  # ... and every how many reads the points' states are asked (a backend query)


def logs(sweep: str, point: str | None, tail: int, follow: bool = False,
         sleep: Callable[[float], bool | None] = time.sleep) -> Iterable[tuple[PointRecord, list[str]]]:
    """The last ``tail`` lines (0: all) of each point's log, as (point, lines). ``follow``: an
    iterator of those, then of the lines each log gains as they come (like ``tail -f``), until
    none of the points is active (a planned point is waited for while one of them ran at the
    last look); the caller may stop it sooner (Ctrl-C). ``sleep``: the wait between reads; it
    ends the following when it returns true (``threading.Event.wait``, set by a signal)."""
    manifest = refresh(manifests.load(sweep)) if follow else manifests.load(sweep)
    records = find_points(manifest, point)
    readers = {r.hash: LogReader(r.rundir.log) for r in records}
    tails = []
    for record in records:
        lines = readers[record.hash].read(final=not follow)
        tails.append((record, (lines[-tail:] if tail > 0 else lines) or [NO_LOG]))
    return _follow(sweep, tails, readers, sleep) if follow else tails


def _follow(sweep: str, tails: list, readers: dict[str, LogReader], sleep: Callable[[float], bool | None]):
    yield from tails
    records = [record for record, _ in tails]
    ran, ended = _progress(records, True)
    polls = 0
    while not ended:
        if sleep(FOLLOW_POLL_S):
            return
        polls += 1
        if polls % FOLLOW_STATE_POLLS == 0:
            manifest = refresh(manifests.load(sweep))
            records = [manifest.points.get(r.hash, r) for r in records]
            ran, ended = _progress(records, ran)
        for record in records:
            lines = readers[record.hash].read(final=ended)
            if lines:
                yield record, lines


def _progress(records: list[PointRecord], ran: bool) -> tuple[bool, bool]:
    """Whether one of the points is active now, and whether following them ends: none is
    active, and none was at the last look (``ran``) or none is planned (a local sweep's queue)."""
    active = any(State(r.state).is_active for r in records)
    planned = any(r.state == State.PLANNED for r in records)
    return active, not active and not (ran and planned)


class LogReader:
    """A log read on from where the last read stopped: complete lines only (a line being written
    waits for the next read, unless ``final``); a log that shrank is read again from its start."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def read(self, final: bool = False) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                if handle.seek(0, 2) < self.offset:
                    self.offset, self.partial = 0, b""
                handle.seek(self.offset)
                data = self.partial + handle.read()
                self.offset = handle.tell()
        except OSError:
            return []
        end = len(data) if final else data.rfind(b"\n") + 1
        self.partial = data[end:]
        return data[:end].decode(errors="replace").splitlines()


def cancel(sweep: str, point: str | None) -> list[str]:
    manifest = refresh(manifests.load(sweep))
    records = [r for r in find_points(manifest, point) if State(r.state).is_active]
    by_backend: dict[str, list[PointRecord]] = defaultdict(list)
    for record in records:
        by_backend[record.backend or "local"].append(record)
    cancelled = []
    for name, group in by_backend.items():
        cancelled += backends.get(name).cancel(group)
    for digest in cancelled:
        record = manifest.points[digest]
        record.state, record.ended_at = State.CANCELLED, time.time()
        record.settle_cause()
    manifest.save()
    return [manifest.points[d].name for d in cancelled]


def results(manifest: Manifest, varying: list[str] | None = None) -> tuple[list[dict], list[str], list[str]]:
    """Rows of (point, state, params that vary, final metrics), best first."""
    rows = []
    for record in manifest.ordered():
        rd = record.rundir
        spec = flatten(rd.read_job().get("spec", {}))
        rows.append({"point": record.name, "state": record.state, "spec": spec, "metrics": rd.read_results()})
    params = varying if varying is not None else _varying(rows)
    for row in rows:
        row["params"] = {p: row["spec"].get(p) for p in params}
    names = {m for r in rows for m in r["metrics"]}
    primary = primary_metric(names)
    rows.sort(key=lambda r: best_first(r["metrics"], primary))
    return rows, params, table_metrics(names, primary, limit=8)


def _varying(rows: list[dict]) -> list[str]:
    flats = [r["spec"] for r in rows if r["spec"]]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if k != "run_name" and len({json.dumps(f.get(k)) for f in flats}) > 1]
