"""The launch driver: every way of starting work ends here (``launch.py sweep`` and ``run``,
and the original command lines). It loads a sweep, plans it, picks the points to submit,
writes their run directories, registers their MLflow runs, hands the backend's request to the
backend, and records what the backend reports. Idempotent by point hash."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional


from workflow.errors import Problem, SpecError
from workflow.failures import Cause
from workflow.spec import JobSpec
from workflow.launch import backends, config, lifecycle, manifest as manifests, mlflow_client, retries, snapshot
from workflow.launch.backends.base import JobState, Request
from workflow.launch.cli_args import items
from workflow.launch.early import Started
from workflow.launch.manifest import Manifest, PointRecord
from workflow.launch.plan import Plan, make_plan
from workflow.launch.sweep import Point, Sweep, expand, single
from workflow.launch.sweep_blocks import shared_dump
from workflow.jsonio import read_json, write_json
from workflow.rundir import EVENTS
from workflow.paths import mlflow_dir, mount_dir, runs_dir
from workflow.secrets import redact
from workflow.states import State

RETRY_CHOICES = ("failed", *(c.value for c in Cause))
SWEEP_KEYS = ("grid", "zip", "random", "points", "overrides", "max_points", "name")

# on_event(kind, record): kind is "submitted", "started" or "finished".
EventHook = Callable[[str, PointRecord], None]


@dataclass
class Selection:
    submit: list[Point] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # hash -> reason


@dataclass
class Outcome:
    plan: Plan
    manifest: Manifest
    submitted: list[str]
    skipped: dict[str, str]
    warnings: list[str]

    @property
    def waited(self) -> bool:
        """The backend ran every point to its end (local): the states are final."""
        return backends.get(self.plan.backend).waits

    @property
    def failed(self) -> list[PointRecord]:
        return [self.manifest.points[h] for h in self.submitted if self.manifest.points[h].state == State.FAILED]


@dataclass(frozen=True)
class DryRun:
    plan: Plan
    request: Request | None  # None: nothing to submit
    skipped: dict[str, str]


def load(path: str, overrides=(), backend: str | None = None, sweep: bool | None = None) -> Sweep:
    """A sweep file, or a job spec as a sweep of one point (``sweep=None``: decided by its keys)."""
    extra = {"backend": backend} if backend else None
    data = config.read_yaml(Path(path))
    is_sweep = any(k in data for k in SWEEP_KEYS)
    is_job = not is_sweep and set(data) - {"base"} and all(k in JobSpec.model_fields for k in data)
    if (sweep and is_job) or (sweep is False and is_sweep):
        kind, other = ("job spec", "run") if sweep else ("sweep file", "sweep")
        raise SpecError(f"{path} is a {kind}", [Problem(
            str(path), None, "a sweep file (grid, zip, random or points over a base spec)" if sweep
            else "a job spec", f"a {kind}", f"use: python launch.py {other} {path}")])
    if not (is_sweep if sweep is None else sweep):
        return single(path, overrides, extra)
    return expand(path, overrides, extra)


def launch_plan(sweep: Sweep, force: bool = False, fail_fast: bool = False, allow_dirty: bool = False,
                started: Started | None = None) -> Plan:
    """The plan, checked against the cluster, with the code snapshot its jobs will run (described,
    not yet written or checked: problems of the input are reported before a dirty tree).
    ``started``: the command's programs started early (the snapshot's git commands), where the
    cluster's limits are asked too, once for the plan and the request."""
    started = started or Started()
    checked = make_plan(placed(sweep), force=force, fail_fast=fail_fast, cluster=started)
    return replace(checked, code=snapshot.take(manifests.sweep_dir(sweep.name), allow_dirty, started))


def placed(sweep: Sweep) -> Sweep:
    """The sweep with each point's index and name as its manifest has them, or will: unique within
    the sweep (``manifest.place``), so a point added by an override or an edited sweep file is
    told apart from the points recorded before it."""
    existing = _existing(sweep.name)
    spots = manifests.place(((p.index, p.name, p.hash) for p in sweep.points), existing, sweep.added)
    records = existing.points if existing else {}
    points = [retries.respec(_moved(p, *spots[p.hash]), records.get(p.hash)) for p in sweep.points]
    return replace(sweep, points=points) if any(a is not b for a, b in zip(points, sweep.points)) else sweep


def _moved(point: Point, index: int, name: str) -> Point:
    if (index, name) == (point.index, point.name):
        return point
    spec = point.spec
    if spec.run_name == point.name:  # named after its point, not by the spec
        spec = spec.model_copy(update={"run_name": name})
    return replace(point, index=index, name=name, spec=spec)


def dry_run(sweep: Sweep, retry: Optional[str] = None, fail_fast: bool = False, allow_dirty: bool = False,
            started: Started | None = None) -> DryRun:
    """What ``launch`` would submit, as values; nothing is written."""
    started = started or Started()
    plan = launch_plan(sweep, force=True, fail_fast=fail_fast, allow_dirty=allow_dirty, started=started)
    chosen = select(plan, _existing(sweep.name), retry)
    request = backends.get(plan.backend, started).render(plan, chosen.submit) if chosen.submit else None
    plan.code.check()
    return DryRun(plan, request, chosen.skipped)


def select(plan: Plan, existing: Manifest | None, retry) -> Selection:
    """Which points to submit: new and failed ones, never done or active ones. ``retry``:
    ``failed`` (only the points that ended without completing) or causes (``timeout,node_fail``:
    only the points that failed for one of them)."""
    wanted = set(items(retry, "--retry", RETRY_CHOICES)) if retry is not None else None
    chosen = Selection()
    for point in plan.sweep.points:
        record = existing.points.get(point.hash) if existing else None
        state = State(record.state) if record else None
        if state == State.COMPLETED or (state and state.is_active):
            chosen.skipped[point.hash] = state
        elif wanted is not None and not (state and state.is_terminal):
            chosen.skipped[point.hash] = state or "new (not retried by --retry)"
        elif wanted is not None and "failed" not in wanted and record.cause not in wanted:
            chosen.skipped[point.hash] = f"{state} ({record.cause or 'no cause'}: not retried by --retry)"
        else:
            chosen.submit.append(point)
    return chosen


def launch(plan: Plan, retry: Optional[str] = None, on_event: EventHook = lambda kind, record: None,
           started: Started | None = None) -> Outcome:
    """Everything that can fail on bad input (selection, backend checks, the request) runs
    before the first write; then, under the sweep lock, the points are written and submitted.
    ``started``: the one the plan was made with (the request reads the same cluster limits)."""
    backend = backends.get(plan.backend, started)
    chosen, request = select(plan, _existing(plan.sweep.name), retry), None
    if chosen.submit:
        request = backend.render(plan, chosen.submit)
        backend.preflight()
        if plan.code:
            plan.code.check()
    registration = None
    with manifests.locked(plan.sweep.name):
        manifest = manifests.load_or_new(plan.sweep.name, plan.sweep.file)
        manifest.adopt_parent()
        again = select(plan, manifest, retry)
        if again.submit:
            if request is None or [p.hash for p in again.submit] != [p.hash for p in chosen.submit]:
                request = backend.render(plan, again.submit)
            registration = _submit(plan, manifest, again.submit, request, recorder(manifest, on_event))
    outcome = Outcome(plan, manifest, [p.hash for p in again.submit], again.skipped, [])
    if registration is None or outcome.waited:
        if registration:  # the sweep ran here: its parent run is needed now
            outcome.warnings += [w for w in [registration.wait()] if w]
        lifecycle.refresh(manifest)
    elif manifest.adopt_parent() | lifecycle.apply_events(manifest):  # no scheduler call: what is known already
        manifest.save()
    if outcome.waited:
        outcome.warnings += mlflow_client.reconcile(manifest)
        again = retry_due(plan, manifest, on_event, started)
        if again is not None:
            outcome = _merged(outcome, again)
    return outcome


def retry_due(plan: Plan, manifest: Manifest, on_event: EventHook = lambda kind, record: None,
              started: Started | None = None) -> Outcome | None:
    """Resubmit the plan's points whose failure their ``retry`` block covers (``retries``), with
    what their re-plan changed; None when none is due. The notes of points that are covered but
    not retried become the outcome's warnings."""
    due, notes = retries.due(plan.sweep.points, manifest)
    if not due:
        return Outcome(plan, manifest, [], {}, notes) if notes else None
    with manifests.locked(plan.sweep.name):
        for retry in due:
            record = manifest.points[retry.point.hash]
            record.extra[retries.REPLANNED] = {**record.extra.get(retries.REPLANNED, {}), **retry.settings}
            record.extra[retries.RETRIES] = record.extra.get(retries.RETRIES, 0) + 1
            record.extra[retries.CHANGE] = retry.change + ("" if retry.resumes else " (starts over: the new "
                                                           "configuration cannot load the checkpoint)")
            notify = f"{record.name}: {record.cause}, retry {record.extra[retries.RETRIES]}"
            notes.append(notify + (f": {record.extra[retries.CHANGE]}" if retry.change else ""))
        manifest.save()
    points = [r.point for r in due]
    sub = make_plan(replace(plan.sweep, points=points), force=True, fail_fast=plan.fail_fast, cluster=started)
    for retry in due:
        if not retry.resumes:
            record = manifest.points[retry.point.hash]
            plan.run_dir(retry.point).set_aside_checkpoints(f"attempt-{record.attempt}")
    outcome = launch(replace(sub, code=plan.code), "failed", on_event, started)
    outcome.warnings[:0] = notes
    return outcome


def _merged(first: Outcome, then: Outcome) -> Outcome:
    return Outcome(first.plan, then.manifest, list(dict.fromkeys(first.submitted + then.submitted)),
                   first.skipped, first.warnings + then.warnings)


def _submit(plan: Plan, manifest: Manifest, points: list[Point], request: Request, report) -> mlflow_client.Registration:
    """Write the code snapshot, start registering the MLflow parent run (not waited for: the jobs
    and the manifest take it from parent.json), record the points, and schedule their jobs. Each
    point's job.json is written into its run directory here, or, by a backend that carries it
    (SLURM), by the job when it starts: 10,000 points then cost no file each."""
    if plan.code:
        plan.code.write()
    manifest.tracking_uri, manifest.experiment = redact(plan.tracking_uri), plan.experiment
    manifest.parent_closed = False
    manifest.path.parent.mkdir(parents=True, exist_ok=True)
    registration = mlflow_client.register(plan, manifest)
    (manifest.path.parent / EVENTS).touch()  # the status index: status reads it, not the run folders
    backend, context, jobs, dumped = backends.get(plan.backend), _shared_context(plan, manifest), {}, {}
    for point in points:
        _record(plan, manifest, point)
        jobs[point.hash] = _job(plan, manifest, point, context, dumped)
        if not backend.carries_job:
            write_json(plan.run_dir(point).job, jobs[point.hash], indent=None)
    manifest.save()
    try:
        backend.schedule(request, report, jobs)
    except KeyboardInterrupt:  # the launcher was stopped while its points ran here: MLflow learns how they ended
        registration.wait()
        manifest.adopt_parent()
        mlflow_client.reconcile(manifest)
        raise
    return registration


def recorder(manifest: Manifest, on_event: EventHook) -> Callable[[dict[str, JobState]], None]:
    """What a backend reports, written into the manifest (the only writer), then shown."""

    def report(news: dict[str, JobState]) -> None:
        now, events = time.time(), []
        for digest, job in news.items():
            record = manifest.points[digest]
            record.job_id = job.job_id or record.job_id
            record.error = job.error
            if job.state == State.PLANNED:
                continue
            record.state = job.state
            if job.state in (State.PENDING, State.SUBMITTED, State.RUNNING):
                record.submitted_at, record.ended_at = now, None
                record.started_at = now if job.state == State.RUNNING else None
                events.append(("started" if job.state == State.RUNNING else "submitted", record))
            else:
                record.ended_at = now
                record.settle_cause(record.rundir.read_state())
                events.append(("finished", record))
        manifest.save()
        for kind, record in events:
            on_event(kind, record)

    return report


def _existing(sweep: str) -> Manifest | None:
    return manifests.load(sweep) if sweep in manifests.known_sweeps() else None


def _record(plan: Plan, manifest: Manifest, point: Point) -> None:
    old = manifest.points.get(point.hash)
    kept = {k: old.extra[k] for k in (retries.REPLANNED, retries.RETRIES, retries.CHANGE) if old and k in old.extra}
    manifest.points[point.hash] = PointRecord(
        index=point.index, name=point.name, hash=point.hash, run_dir=plan.run_path(point),
        backend=plan.backend, mlflow_run_id=old.mlflow_run_id if old else None,
        attempt=old.attempt + 1 if old and State(old.state).is_terminal else 1,
        commit=plan.code.commit if plan.code else None, code=str(plan.code.root) if plan.code else None, extra=kept)


def _shared_context(plan: Plan, manifest: Manifest) -> dict:
    """What every point's job.json context shares."""
    return {
        "sweep": manifest.sweep, "sweep_id": manifest.sweep_id, "backend": plan.backend,
        "tracking_uri": redact(plan.tracking_uri), "experiment": plan.experiment,
        # The parent run: known when the sweep is resubmitted, else in parent.json once registered.
        "parent_run_id": manifest.parent_run_id, "parent_file": str(manifest.path.parent / manifests.PARENT_FILE),
        "fail_fast": plan.fail_fast,
        # The launcher's locations, resolved: the node runs from the snapshot, not the checkout.
        "env": {"WF_MOUNT_DIR": str(mount_dir()), "WF_RUNS_DIR": str(runs_dir()), "WF_MLFLOW_DIR": str(mlflow_dir())},
    }


def _job(plan: Plan, manifest: Manifest, point: Point, shared: dict, dumped: dict[int, dict]) -> dict:
    """What job.json holds: the spec as data, and the context the node needs (its run, tags and
    paths). ``dumped``: the blocks the points share, each dumped once (``shared_dump``)."""
    record = manifest.points[point.hash]
    context = {
        **shared, "point_hash": point.hash, "point_index": point.index, "point_name": point.name,
        "mlflow_run_id": record.mlflow_run_id, "tags": mlflow_client.run_tags(manifest, record, plan.sweep.varying),
        "deepspeed_auto": plan.auto_choices.get(point.hash),
        "attempt": record.attempt, "change": record.extra.get(retries.CHANGE),
        "code": {"dir": record.code, "commit": record.commit, "dirty": bool(plan.code and plan.code.dirty)},
    }
    return {"spec": config.absolute_paths(shared_dump(point.spec, dumped)), "context": context}


def resubmit_due(manifest: Manifest, started: Started | None = None) -> list[str]:
    """``status`` and ``sync``: resubmit the scheduler's points (SLURM, ctl) whose failure their
    ``retry`` block covers, each from the spec its job ran (its job.json) and with the code it was
    submitted with; returns what was done, in words. Local points are retried by the sweep that
    runs them."""
    from pydantic import ValidationError

    groups: dict[str | None, list[Point]] = {}
    notes, judged = [], False
    for record in manifest.ordered():
        if not lifecycle.retry_candidate(record):
            continue
        dumped = read_json(record.rundir.job).get("spec")  # none: it never started (sweep --retry resubmits it)
        try:
            spec = JobSpec.model_validate(dumped) if dumped else None
        except ValidationError:
            spec = None
        if spec and spec.retry and record.cause in spec.retry.on:
            groups.setdefault(record.code, []).append(Point(record.index, record.name, record.hash, {}, spec))
        else:
            record.extra[lifecycle.NOT_RETRIED], judged = record.attempt, True
    if judged:
        manifest.save()
    for code, points in groups.items():
        record = manifest.points[points[0].hash]
        kept = snapshot.Snapshot(Path(code), record.commit or "unknown", (), True, ()) if code else None
        sweep = Sweep(manifest.sweep, manifest.file, points, [])
        plan = replace(make_plan(sweep, force=True, cluster=started), code=kept)
        outcome = retry_due(plan, manifest, started=started)
        if outcome is not None:
            notes += outcome.warnings
            manifest = outcome.manifest
    return notes
