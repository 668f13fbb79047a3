"""The launcher's MLflow client: the one place that names a point's run tags, registers the
sweep's runs, reconciles them with the manifest, and closes the parent run.

The launcher never imports mlflow: every call here runs the MLflow helper process,
``python -m workflow.launch.mlflow_helper register|reconcile|log|artifact`` (a JSON request on
stdin, a JSON reply on stdout), which does the tracking.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from typing import TYPE_CHECKING, Callable

from workflow.jsonio import read_json
from workflow.launch.manifest import PARENT_FILE, Manifest, PointRecord
from workflow.launch.proc import communicate
from workflow.metrics import best_first, primary_metric
from workflow.paths import PROJECT_ROOT, usable_tracking_uri
from workflow.states import TERMINAL, State

if TYPE_CHECKING:
    from workflow.launch.plan import Plan

HELPER = "workflow.launch.mlflow_helper"  # the process that imports mlflow
TIMEOUT_S = 120
REPLY_MARK = "@@reply "


def run_tags(manifest: Manifest, record: PointRecord | None = None, varying: list[str] | None = None) -> dict:
    """The MLflow tags of the sweep's parent run (no record) or of one point's run; ``varying``:
    the sweep's varying keys, when known. The node adds only its host."""
    tags = {"sweep": manifest.sweep, "sweep_id": manifest.sweep_id}
    if varying is not None:
        tags["sweep.varying"] = ",".join(varying)
    if record is None:
        return {**tags, "host": socket.gethostname()}
    return {**tags, "point_hash": record.hash, "point_index": str(record.index), "point_name": record.name,
            "backend": record.backend or "", "git_commit": record.commit or "unknown"}


class Registration:
    """The helper process that creates (or reopens) the sweep's parent run. It outlives the
    launcher (its own session) and writes its reply, or its error, to ``parent.json``."""

    def __init__(self, proc: subprocess.Popen, path: Path):
        self.proc, self.path = proc, path

    def wait(self) -> str | None:
        """Wait for the reply; a warning when MLflow could not be reached."""
        try:
            self.proc.wait(timeout=TIMEOUT_S + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        error = read_json(self.path).get("error") or ("" if self.path.is_file() else "the helper wrote no reply")
        if error:
            return (f"MLflow parent run not registered ({error}); each job creates its own run, and status or "
                    "sync creates the parent and attaches them, retried next time")
        return None


def register(plan: Plan, manifest: Manifest) -> Registration:
    """Create (or reopen) the sweep's parent run: one tracking call, whatever the number of
    points, in a helper process that the launcher does not wait for (importing mlflow alone
    takes seconds). Each job creates its point's child run when it starts, so the run's start is
    the job's, under the parent that ``parent.json`` names (it waits for the file if it comes
    first), and keeps the run id in its run folder, so a requeued or retried job logs into the
    same run. The manifest takes the parent from the file when status, sync, compare or the next
    launch reads it (``Manifest.adopt_parent``)."""
    path = manifest.path.parent / PARENT_FILE
    path.unlink(missing_ok=True)
    request = {
        "uri": plan.tracking_uri, "experiment": plan.experiment, "sweep": manifest.sweep,
        "parent_run_id": manifest.parent_run_id, "reply_file": str(path),
        "tags": {**run_tags(manifest, varying=plan.sweep.varying), "backend": plan.backend,
                 "git_commit": plan.code.commit if plan.code else ""},
    }
    # Its output is dropped (a library's message could name a credential); what went wrong is in
    # parent.json, redacted.
    proc = subprocess.Popen([sys.executable, "-m", HELPER, "register"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=PROJECT_ROOT,
                            start_new_session=True)
    proc.stdin.write(json.dumps(request))
    proc.stdin.close()
    return Registration(proc, path)


def failed_registration(manifest: Manifest) -> dict | None:
    """What the registering helper asked for, when it ended without a parent run (MLflow was
    unreachable): the request to create the parent with now."""
    if manifest.parent_run_id:
        return None
    reply = read_json(manifest.path.parent / PARENT_FILE)
    if not reply.get("error"):
        return None
    return {"experiment": manifest.experiment, "sweep": manifest.sweep,
            "tags": reply.get("tags") or run_tags(manifest)}


NOTIFY_AFTER = 200  # ended points in one reconcile: say what takes the time


def reconcile(manifest: Manifest, resend: bool = False, notify: Callable[[str], None] | None = None) -> list[str]:
    """Bring MLflow in line with the manifest, in one tracking call: send spooled rows MLflow
    never got (outages), close runs whose job ended without closing them (SIGKILL, scancel, node
    failure, time limit) at the job's end time, tag failures with their error, update the parent
    run's summary of the sweep, and close the parent when every point has ended. A run the job
    closed itself keeps its times. A point cancelled before it started has no run (the parent
    counts it by state). Each ended point is done once (``resend``: again); returns warnings
    (MLflow unreachable: retried next time). ``notify`` hears of a long one."""
    if not manifest.tracking_uri:
        return []
    ended = manifest.ordered(r for r in manifest.points.values() if r.state in TERMINAL
                             and (resend or not r.extra.get("mlflow_closed")))
    never_ran = {r.hash for r in ended if _cancelled_before_start(r)}
    for digest in never_ran:  # nothing ran, so there is no run to record: the parent counts them
        manifest.points[digest].extra["mlflow_closed"] = True
    ended = [r for r in ended if r.hash not in never_ran]
    create_parent = failed_registration(manifest)
    orphaned = create_parent is not None
    all_ended = all(r.state in TERMINAL for r in manifest.points.values())
    has_parent = bool(manifest.parent_run_id) or orphaned
    close_parent = has_parent and all_ended and (resend or not manifest.parent_closed)
    if not ended and not close_parent and not orphaned:
        if never_ran:
            manifest.save()
        return []
    request = {"uri": usable_tracking_uri(manifest.tracking_uri), "experiment": manifest.experiment,
               "sweep_id": manifest.sweep_id, "parent_run_id": manifest.parent_run_id,
               "create_parent": create_parent,
               "points": [_sync_entry(manifest, r) for r in ended],
               "parent": _parent_entry(manifest, close_parent) if has_parent else None}
    if notify and len(ended) > NOTIFY_AFTER:
        notify(f"MLflow: recording {len(ended):,} ended points (once; a point that failed before it started "
               "gets a closed run with its error)")
    try:
        reply = call("reconcile", request)
    except RuntimeError as exc:
        return [f"MLflow not updated ({exc}); metrics stay spooled, retried on the next status or sync"]
    if orphaned:
        manifest.parent_run_id, manifest.experiment_id = reply["parent_run_id"], reply["experiment_id"]
    for record in ended:
        record.mlflow_run_id = reply["runs"][record.hash]
        record.extra["mlflow_closed"] = True
    manifest.parent_closed = manifest.parent_closed or close_parent
    manifest.save()
    return []


UI_PORT = 5000
COMPARE_LIMIT = 100  # runs selected in the compare link (a URL of 10,000 run ids helps no one)


@dataclass(frozen=True)
class UiLinks:
    command: str | None  # what serves the UI (None: the tracking server is the UI)
    runs: str            # the experiment's training runs, filtered to this sweep
    compare: str | None  # the compare page with the sweep's runs selected


def ui_links(manifest: Manifest) -> UiLinks | None:
    """Where to see the sweep in the MLflow UI. MLflow 3.17 opens an experiment on its GenAI
    overview unless the URL asks for the model-training view (``workflowType``), whatever the
    experiment's tags say; the runs filter must be on the runs route (a bare experiment URL
    drops it)."""
    uri, exp = manifest.tracking_uri, manifest.experiment_id
    if not uri or not exp:
        return None
    if uri.startswith(("http://", "https://")):
        base, command = uri.rstrip("/"), None
    else:
        base, command = f"http://127.0.0.1:{UI_PORT}", f"mlflow ui --backend-store-uri {uri} --port {UI_PORT}"
    search = quote(f"tags.sweep_id = '{manifest.sweep_id}'")
    runs = f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning&searchFilter={search}"
    ids = [r.mlflow_run_id for r in manifest.ordered(r for r in manifest.points.values() if r.mlflow_run_id)]
    ids = ids[:COMPARE_LIMIT]
    compare = (f"{base}/#/compare-runs?runs={json.dumps(ids, separators=(',', ':'))}"
               f"&experiments={json.dumps([exp])}") if ids else None
    return UiLinks(command, runs, compare)


def _cancelled_before_start(record: PointRecord) -> bool:
    """Cancelled while it waited in the queue: no job ran, and MLflow has no run of it."""
    return (State(record.state) == State.CANCELLED and not record.mlflow_run_id and not record.started_at
            and not record.node.get("started_at"))


def _sync_entry(manifest: Manifest, record: PointRecord) -> dict:
    state = record.node
    return {"hash": record.hash, "name": record.name, "run_dir": record.run_dir,
            "run_id": record.mlflow_run_id or state.get("mlflow_run_id"), "status": State(record.state).mlflow_status,
            "error": record.error, "tags": run_tags(manifest, record),
            "started_at": state.get("started_at") or record.started_at,
            "ended_at": state.get("ended_at") or record.ended_at}


def sweep_summary(manifest: Manifest) -> tuple[str | None, dict, dict]:
    """What the parent run shows: the best point's hash, its final metrics, and tags (the best
    point's name and hash, and the count of points by state)."""
    finals = {r.hash: r.rundir.read_results() for r in manifest.ordered() if r.state == State.COMPLETED}
    tags = {"points": str(len(manifest.points)), **{f"points.{k}": str(v) for k, v in manifest.state_counts().items()}}
    finals = {h: f for h, f in finals.items() if f}
    if not finals:
        return None, {}, tags
    primary = primary_metric({m for f in finals.values() for m in f})
    best = min(finals, key=lambda h: best_first(finals[h], primary))
    metrics = {k: float(v) for k, v in finals[best].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tags.update({"best_point": manifest.points[best].name, "best_point_hash": best})
    return best, metrics, tags


def parent_name(manifest: Manifest, best: str | None, metrics: dict) -> str:
    """The parent run's name says who won, so the runs list shows it without expanding the sweep:
    ``lr: exact_match=0.92 by learning_rate=1e-3`` (the metric first: the UI cuts long names)."""
    if best is None:
        return manifest.sweep
    key = primary_metric(metrics) or next(iter(metrics), None)
    value = f"{key}={metrics[key]:.4g} by " if key else "best: "
    return f"{manifest.sweep}: {value}{manifest.points[best].name}"


def _parent_entry(manifest: Manifest, close: bool) -> dict:
    best, metrics, tags = sweep_summary(manifest)
    entry = {"run_id": manifest.parent_run_id, "metrics": metrics, "tags": tags,
             "name": parent_name(manifest, best, metrics), "step": manifest.state_counts().get(State.COMPLETED, 0)}
    if close:  # FAILED if a point failed, else KILLED if one was stopped (cancelled, timed out), else FINISHED
        statuses = {State(r.state).mlflow_status for r in manifest.points.values()}
        status = next(s for s in ("FAILED", "KILLED", "FINISHED") if s in statuses or s == "FINISHED")
        ends = [r.ended_at for r in manifest.points.values() if r.ended_at]
        entry.update(status=status, ended_at=max(ends) if ends else None)
    return entry


def log_metrics(uri: str, run_id: str, values: dict[str, float]) -> None:
    """Log final metrics into an existing run (``evaluate --run``); raises RuntimeError."""
    call("log", {"uri": usable_tracking_uri(uri), "run_id": run_id, "metrics": values})


def log_artifact(manifest: Manifest, path: Path) -> None:
    """Attach a file to the sweep's parent run (``compare --plot``); raises RuntimeError."""
    if not manifest.parent_run_id or not manifest.tracking_uri:
        raise RuntimeError("the sweep has no MLflow parent run")
    call("artifact", {"uri": usable_tracking_uri(manifest.tracking_uri), "run_id": manifest.parent_run_id,
                      "path": str(path)})


def call(command: str, request: dict) -> dict:
    """Run the helper process with a JSON request; returns its JSON reply (raises RuntimeError
    on failure or after TIMEOUT_S)."""
    proc = subprocess.Popen([sys.executable, "-m", HELPER, command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    answer = communicate(proc, TIMEOUT_S, json.dumps(request))
    if answer is None:
        raise RuntimeError(f"MLflow did not answer within {TIMEOUT_S} s")
    return _reply(proc.returncode, *answer)


def _reply(code: int, stdout: str, stderr: str) -> dict:
    if code != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(last[:300])
    replies = [line for line in stdout.splitlines() if line.startswith(REPLY_MARK)]
    if not replies:
        raise RuntimeError("no reply from the tracking helper")
    return json.loads(replies[-1].removeprefix(REPLY_MARK))
