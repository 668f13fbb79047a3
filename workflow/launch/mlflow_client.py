"""The launcher's MLflow client: the one place that names a point's run tags, registers the
sweep's runs, reconciles them with the manifest, and closes the parent run.

The launcher never imports mlflow: every call here runs the MLflow helper process,
``python -m workflow.launch.mlflow_helper register|reconcile|log|artifact`` (a JSON request on
stdin, a JSON reply on stdout), which does the tracking.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from workflow.jsonio import read_json
from workflow.launch.manifest import PARENT_FILE, Manifest, PointRecord
from workflow.launch.proc import communicate
from workflow.metrics import best_first, lower_is_better, primary_metric
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


def failure_tags(record: PointRecord) -> dict:
    """Why the point failed, as its run's tags (the node sets them too, when it saw the failure)."""
    if not record.cause:
        return {}
    return {"failure.cause": record.cause, **({"failure.where": record.where} if record.where else {})}


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
        "view": runs_view(manifest.sweep, manifest.sweep_id, plan.sweep.varying, sweep_metric(plan)),
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
            "tags": reply.get("tags") or run_tags(manifest), "view": reply.get("view")}


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
# MLflow 3.17's saved views of an experiment's runs page: an experiment tag each, named by the
# key that the runs page takes as ``viewStateShareKey``.
VIEW_TAG = "mlflow.sharedViewState."
LOSS = "best_eval_loss"  # every task's final metrics hold it
VIEW_PARAMS = 30  # varying params shown as columns (an experiment tag holds 5,000 characters)


@dataclass(frozen=True)
class UiLinks:
    command: str | None  # what serves the UI (None: the tracking server is the UI)
    runs: str            # the sweep's training runs: the saved view of the sweep (columns, order)
    compare: str | None  # the compare page with the sweep's runs selected
    points: dict[str, str]  # a point's hash -> its run's page (the training-run view)


def ui_base(uri: str, port: int | None = None) -> tuple[str, str | None]:
    """The UI's address for a store, and the command that serves it: a tracking server is its
    own UI; a local store is served by ``python launch.py ui`` on 127.0.0.1:``port``."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/"), None
    port = port or UI_PORT
    return f"http://127.0.0.1:{port}", f"python launch.py ui --port {port}"


def ui_links(manifest: Manifest, port: int | None = None) -> UiLinks | None:
    """Where to see the sweep in the MLflow UI. MLflow 3.17 opens an experiment on its GenAI
    overview unless the URL asks for the model-training view (``workflowType``). Its runs page
    reads from the URL only the search facets (``searchFilter``, ``orderByKey``, ``orderByAsc``,
    ``startTime``, ``lifecycleFilter``, ...), not the columns; a saved view (the experiment tag
    that ``register`` writes, see ``runs_view``) holds the columns too, and the runs link opens
    it. A child's link opens its run's page; the compare page takes only the runs from its URL
    (its parallel coordinates start on the first three differing params and the first metric,
    component state that no URL or tag sets in 3.17)."""
    uri, exp = manifest.tracking_uri, manifest.experiment_id
    if not uri or not exp:
        return None
    base, command = ui_base(uri, port)
    training = "workflowType=machine_learning"
    runs = f"{base}/#/experiments/{exp}/runs?{training}&viewStateShareKey={view_key(manifest.sweep_id)}"
    recorded = manifest.ordered(r for r in manifest.points.values() if r.mlflow_run_id)
    points = {r.hash: f"{base}/#/experiments/{exp}/runs/{r.mlflow_run_id}?{training}" for r in recorded}
    ids = [r.mlflow_run_id for r in recorded][:COMPARE_LIMIT]
    compare = (f"{base}/#/compare-runs?runs={json.dumps(ids, separators=(',', ':'))}"
               f"&experiments={json.dumps([exp])}") if ids else None
    return UiLinks(command, runs, compare, points)


def view_key(sweep_id: str) -> str:
    return f"sweep-{sweep_id}"


def children_filter(sweep_id: str) -> str:
    """The sweep's point runs, not its parent: with a filter and an order by a metric, the runs
    page fetches no parents, so the children are rows of their own rather than folded under
    their parent (3.17 keeps which rows are expanded out of a saved view)."""
    return f"tags.sweep_id = '{sweep_id}' AND tags.point_hash != ''"


def runs_view(sweep: str, sweep_id: str, varying: list[str], metric: str | None) -> tuple[str, str]:
    """The saved view of the sweep's runs (the experiment tag's key and value, as 3.17's "Save
    view" writes it): its point runs, best first by ``metric``, with the metric, the best eval
    loss and the varying params as columns, and every run shown in the charts."""
    metric = metric or LOSS
    metrics = [metric] + ([LOSS] if metric != LOSS else [])
    state = {"searchFilter": children_filter(sweep_id), "orderByKey": _column("metrics", metric),
             "orderByAsc": lower_is_better(metric), "runsHiddenMode": "SHOW_ALL",
             "selectedColumns": [_column("metrics", m) for m in metrics]
             + [_column("params", k) for k in varying[:VIEW_PARAMS]]}
    now = int(time.time() * 1000)
    envelope = {"name": f"sweep {sweep}", "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    return VIEW_TAG + view_key(sweep_id), json.dumps(envelope)


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the runs table's column ids


def sweep_metric(plan: Plan) -> str | None:
    """The metric the sweep is ranked by, as the plan knows it before any result: a seq2seq
    sweep's first generation metric by rank; other tasks' by their results (``sweep_summary``)."""
    spec = plan.sweep.points[0].spec if plan.sweep.points else None
    if spec is None or spec.task != "seq2seq":
        return None
    return primary_metric(spec.generate.metrics)


UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
STOP_WAIT_S = 15


def ui_command(uri: str, port: int | None = None) -> list[str]:
    """``mlflow ui`` of the store at ``uri`` on 127.0.0.1:``port`` (one worker: a researcher's
    browser, not a fleet of jobs, talks to it); raises RuntimeError without an mlflow command."""
    found = shutil.which("mlflow")
    if found is None:
        raise RuntimeError("no `mlflow` command on PATH (pip install mlflow)")
    return [found, "ui", "--backend-store-uri", usable_tracking_uri(uri), "--host", "127.0.0.1",
            "--port", str(port or UI_PORT), "--workers", "1"]


def serve_ui(command: list[str]) -> int:
    """Run the UI until it exits, or until Ctrl-C (or SIGTERM, which the launcher turns into
    one) stops it: then it is stopped as Ctrl-C stops it, and killed if it lingers. Returns its
    exit code (0 when stopped)."""
    proc = subprocess.Popen(command, env={**os.environ, **UI_ENV}, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)  # the server and its workers
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return 0


def _cancelled_before_start(record: PointRecord) -> bool:
    """Cancelled while it waited in the queue: no job ran, and MLflow has no run of it."""
    return (State(record.state) == State.CANCELLED and not record.mlflow_run_id and not record.started_at
            and not record.node.get("started_at"))


def _sync_entry(manifest: Manifest, record: PointRecord) -> dict:
    state = record.node
    return {"hash": record.hash, "name": record.name, "run_dir": record.run_dir,
            "run_id": record.mlflow_run_id or state.get("mlflow_run_id"), "status": State(record.state).mlflow_status,
            "error": record.error, "tags": {**run_tags(manifest, record), **failure_tags(record)},
            "started_at": state.get("started_at") or record.started_at,
            "ended_at": state.get("ended_at") or record.ended_at}


def sweep_summary(manifest: Manifest) -> tuple[str | None, dict, dict]:
    """What the parent run shows: the best point's hash, its final metrics, and tags (the best
    point's name and hash, and the count of points by state)."""
    finals = {r.hash: r.rundir.read_results() for r in manifest.ordered() if r.state == State.COMPLETED}
    tags = {"points": str(len(manifest.points)), **{f"points.{k}": str(v) for k, v in manifest.state_counts().items()},
            **{f"points.failed.{k}": str(v) for k, v in manifest.cause_counts().items()}}
    finals = {h: f for h, f in finals.items() if f}
    tags.update(search_tags(manifest))
    if not finals:
        return None, {}, tags
    primary = primary_metric({m for f in finals.values() for m in f})
    best = min(finals, key=lambda h: best_first(finals[h], primary))
    metrics = {k: float(v) for k, v in finals[best].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tags.update({"best_point": manifest.points[best].name, "best_point_hash": best})
    return best, metrics, tags


def search_tags(manifest: Manifest) -> dict:
    """A search's parent run: the trials by state, the best value and its parameters (from the
    study; nothing for other sweeps, or before the first trial has started)."""
    from workflow.study import SEARCH_FILE

    info = manifest.path.parent / SEARCH_FILE
    if not info.is_file():
        return {}
    from workflow.jsonio import read_json
    from workflow.launch import search

    found = read_json(info)
    try:
        summary = search.summary(found["storage"], found["study"])
    except Exception:  # noqa: BLE001 - the study is shown by status; the parent keeps its other tags
        return {}
    if not summary:
        return {}
    tags = {"search.trials": str(summary["trials"]), "search.steps": str(summary["steps"]),
            **{f"search.{k}": str(v) for k, v in summary["states"].items()}}
    best = summary["best"]
    if best:
        tags.update({"search.best_trial": str(best["number"]), "search.best_value": f"{best['value']:.6g}",
                     "search.metric": found["metric"],
                     **{f"search.best.{k}": str(v) for k, v in best["params"].items()}})
    return tags


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
