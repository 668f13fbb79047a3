"""Launch a plan: pick the points to submit, write their run directories, register MLflow
runs, and hand the backend's request to the backend. Idempotent by point hash."""

from __future__ import annotations

import json
import socket
from pathlib import Path
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Optional

import yaml

from workflow import backends, manifest as manifests
from workflow.backends.base import Request
from workflow.errors import Problem, SpecError
from workflow.manifest import ACTIVE, DONE, TERMINAL_FAILED, Manifest, PointRecord
from workflow.paths import PROJECT_ROOT, usable_tracking_uri
from workflow.rundir import write_json
from workflow.secrets import redact

if TYPE_CHECKING:  # annotations only: status never loads the spec machinery
    from workflow.plan import Plan
    from workflow.sweep import Point

RETRY_CHOICES = ("failed",)
TRACKING_TIMEOUT_S = 120


@dataclass
class Selection:
    submit: list[Point] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # hash -> reason


@dataclass
class LaunchResult:
    manifest: Manifest
    submitted: list[str]
    skipped: dict[str, str]
    warnings: list[str]


def select(plan: Plan, existing: Manifest | None, retry: Optional[str]) -> Selection:
    """Which points to submit: new and failed ones, never done or active ones."""
    if retry is not None and retry not in RETRY_CHOICES:
        raise SpecError("Invalid --retry", [Problem("<command line>", "--retry", "one of: failed", repr(retry))])
    chosen = Selection()
    for point in plan.sweep.points:
        record = existing.points.get(point.hash) if existing else None
        state = record.state if record else None
        if state == DONE or state in ACTIVE:
            chosen.skipped[point.hash] = state
        elif retry == "failed" and state not in TERMINAL_FAILED:
            chosen.skipped[point.hash] = state or "new (not retried by --retry failed)"
        else:
            chosen.submit.append(point)
    return chosen


def render(plan: Plan, points: list[Point]) -> Request:
    return backends.get(plan.backend).render(plan, points)


def launch(plan: Plan, retry: Optional[str] = None,
           on_event: Callable[[str, PointRecord], None] = lambda kind, record: None) -> LaunchResult:
    """Everything that can fail on bad input (selection, backend checks, the request) runs
    before the first write; then, under the sweep lock, the points are written and submitted."""
    backend = backends.get(plan.backend)
    chosen = select(plan, _existing(plan), retry)
    if chosen.submit:
        request = backend.render(plan, chosen.submit)
        backend.preflight()
    with manifests.locked(plan.sweep.name):
        manifest = manifests.load_or_new(plan.sweep.name, plan.sweep.file)
        again = select(plan, manifest, retry)
        if not again.submit:
            return LaunchResult(manifest, [], again.skipped, [])
        if [p.hash for p in again.submit] != [p.hash for p in chosen.submit]:
            request = backend.render(plan, again.submit)
        manifest.tracking_uri, manifest.experiment = redact(plan.tracking_uri), plan.experiment
        manifest.parent_closed = False
        for point in again.submit:
            _write_run_dir(plan, manifest, point)
        manifest.save()
        warning = _register_runs(plan, manifest, again.submit, request)
        for point in again.submit:
            _write_job(plan, manifest, point)
        manifest.save()
        backend.submit(request, manifest, on_event)
        return LaunchResult(manifest, [p.hash for p in again.submit], again.skipped, [warning] if warning else [])


def _existing(plan: Plan) -> Manifest | None:
    return manifests.load(plan.sweep.name) if plan.sweep.name in manifests.known_sweeps() else None


def _write_run_dir(plan: Plan, manifest: Manifest, point: Point) -> None:
    run_dir = plan.run_dir(point)
    run_dir.root.mkdir(parents=True, exist_ok=True)
    run_dir.spec_yaml.write_text(yaml.safe_dump(point.spec, sort_keys=False))
    old = manifest.points.get(point.hash)
    manifest.points[point.hash] = PointRecord(
        index=point.index, name=point.name, hash=point.hash, run_dir=str(run_dir.root),
        backend=plan.backend, mlflow_run_id=old.mlflow_run_id if old else None)


def _write_job(plan: Plan, manifest: Manifest, point: Point) -> None:
    record = manifest.points[point.hash]
    context = {
        "sweep": manifest.sweep, "sweep_id": manifest.sweep_id, "point_hash": point.hash,
        "point_index": point.index, "point_name": point.name, "backend": plan.backend,
        "tracking_uri": redact(plan.tracking_uri), "experiment": plan.experiment,
        "parent_run_id": manifest.parent_run_id, "mlflow_run_id": record.mlflow_run_id,
        "git_commit": git_commit(), "submit_host": socket.gethostname(), "fail_fast": plan.fail_fast,
        "deepspeed_auto": plan.auto_choices.get(point.hash),
    }
    write_json(plan.run_dir(point).job, {"spec": point.spec, "context": context})


def _tags(manifest: Manifest, plan: Plan) -> dict:
    return {"sweep": manifest.sweep, "sweep_id": manifest.sweep_id, "backend": plan.backend,
            "git_commit": git_commit(), "host": socket.gethostname()}


def _register_runs(plan: Plan, manifest: Manifest, points: list[Point], request: Request) -> str | None:
    """Create the parent and child MLflow runs in a subprocess (the CLI never imports mlflow)."""
    request = {
        "uri": plan.tracking_uri, "experiment": plan.experiment, "sweep": manifest.sweep,
        "parent_run_id": manifest.parent_run_id, "tags": _tags(manifest, plan),
        "points": [{"hash": p.hash, "name": p.name, "run_id": manifest.points[p.hash].mlflow_run_id,
                    "tags": {"point_hash": p.hash, "point_index": str(p.index), "point_name": p.name,
                             **request.point_tags(p.hash)}}
                   for p in points],
    }
    try:
        reply = call_tracking("prepare", request)
    except RuntimeError as exc:
        return f"MLflow runs not registered before submission ({exc}); each job will create its own run."
    manifest.parent_run_id = reply["parent_run_id"]
    for digest, run_id in reply["runs"].items():
        manifest.points[digest].mlflow_run_id = run_id
    return None


def call_tracking(command: str, request: dict) -> dict:
    """Run ``python -m workflow.tracking <command>`` with a JSON request; returns its JSON reply."""
    try:
        proc = subprocess.run([sys.executable, "-m", "workflow.tracking", command], input=json.dumps(request),
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=TRACKING_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"MLflow did not answer within {TRACKING_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(last[:300])
    replies = [line for line in proc.stdout.splitlines() if line.startswith("@@reply ")]
    if not replies:
        raise RuntimeError("no reply from the tracking helper")
    return json.loads(replies[-1].removeprefix("@@reply "))


def reconcile(manifest: Manifest) -> list[str]:
    """Bring MLflow in line with the manifest: send spooled rows MLflow never got (outages),
    close runs whose job ended without closing them (SIGKILL, scancel, node failure, time
    limit), tag failures with their error, and close the parent when every point has ended.
    Done once per ended point; returns warnings (MLflow unreachable: retried next time)."""
    ended = [r for r in manifest.ordered() if r.state in (DONE,) + TERMINAL_FAILED
             and not r.extra.get("mlflow_closed") and (Path(r.run_dir) / "job.json").is_file()]
    warnings = []
    if ended and manifest.tracking_uri:
        request = {"uri": usable_tracking_uri(manifest.tracking_uri), "experiment": manifest.experiment,
                   "parent_run_id": manifest.parent_run_id,
                   "points": [{"hash": r.hash, "name": r.name, "run_dir": r.run_dir, "run_id": r.mlflow_run_id,
                               "state": r.state, "error": r.error,
                               "tags": {"sweep": manifest.sweep, "sweep_id": manifest.sweep_id, "point_hash": r.hash,
                                        "point_index": str(r.index), "point_name": r.name,
                                        "backend": r.backend or ""}} for r in ended]}
        try:
            reply = call_tracking("sync", request)
        except RuntimeError as exc:
            warnings.append(f"MLflow not updated ({exc}); metrics stay spooled, retried on the next status or sync")
        else:
            for record in ended:
                record.mlflow_run_id = reply[record.hash]["run_id"]
                record.extra["mlflow_closed"] = True
            manifest.save()
    warning = finish_parent(manifest)
    return warnings + ([warning] if warning else [])


def finish_parent(manifest: Manifest) -> str | None:
    """Close the sweep's parent run when every point has ended; returns a warning or None."""
    if not manifest.parent_run_id or not manifest.tracking_uri or manifest.parent_closed:
        return None
    if any(r.state not in (DONE,) + TERMINAL_FAILED for r in manifest.points.values()):
        return None
    failed = any(r.state != DONE for r in manifest.points.values())
    try:
        call_tracking("finish", {"uri": usable_tracking_uri(manifest.tracking_uri),
                                 "runs": {manifest.parent_run_id: "FAILED" if failed else "FINISHED"}})
    except RuntimeError as exc:
        return f"could not close the MLflow parent run: {exc}"
    manifest.parent_closed = True
    manifest.save()
    return None


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"

