"""The launcher's MLflow client: the one place that names a point's run tags, registers the
sweep's runs, reconciles them with the manifest, and closes the parent run.

The launcher never imports mlflow itself: every call runs this module as a helper process,
``python -m workflow.launch.runs prepare|sync|finish`` (a JSON request on stdin, a JSON reply
on stdout). The helper half below ``# --- helper process`` imports mlflow and reuses the
node's tracker to send spooled rows.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from workflow.launch.manifest import Manifest, PointRecord
from workflow.paths import PROJECT_ROOT, usable_tracking_uri
from workflow.secrets import redact
from workflow.states import State

if TYPE_CHECKING:
    from workflow.launch.plan import Plan
    from workflow.launch.sweep import Point

TIMEOUT_S = 120
REPLY_MARK = "@@reply "


def run_tags(manifest: Manifest, record: PointRecord | None = None) -> dict:
    """The MLflow tags of the sweep's parent run (no record) or of one point's run. The node
    adds only its host."""
    tags = {"sweep": manifest.sweep, "sweep_id": manifest.sweep_id}
    if record is None:
        return {**tags, "host": socket.gethostname()}
    return {**tags, "point_hash": record.hash, "point_index": str(record.index), "point_name": record.name,
            "backend": record.backend or "", "git_commit": record.commit or "unknown"}


def register(plan: Plan, manifest: Manifest, points: list[Point]) -> str | None:
    """Create the parent run and one child run per point before submission, so a requeued job
    logs into the same run. Returns a warning when MLflow cannot be reached (each job then
    creates its own run)."""
    request = {
        "uri": plan.tracking_uri, "experiment": plan.experiment, "sweep": manifest.sweep,
        "parent_run_id": manifest.parent_run_id,
        "tags": {**run_tags(manifest), "backend": plan.backend, "git_commit": plan.code.commit if plan.code else ""},
        "points": [{"hash": p.hash, "name": p.name, "run_id": manifest.points[p.hash].mlflow_run_id,
                    "tags": run_tags(manifest, manifest.points[p.hash])} for p in points],
    }
    try:
        reply = call("prepare", request)
    except RuntimeError as exc:
        return f"MLflow runs not registered before submission ({exc}); each job will create its own run."
    manifest.parent_run_id = reply["parent_run_id"]
    for digest, run_id in reply["runs"].items():
        manifest.points[digest].mlflow_run_id = run_id
    return None


def reconcile(manifest: Manifest) -> list[str]:
    """Bring MLflow in line with the manifest: send spooled rows MLflow never got (outages),
    close runs whose job ended without closing them (SIGKILL, scancel, node failure, time
    limit), tag failures with their error, and close the parent when every point has ended.
    Done once per ended point; returns warnings (MLflow unreachable: retried next time)."""
    ended = [r for r in manifest.ordered() if State(r.state).is_terminal
             and not r.extra.get("mlflow_closed") and r.rundir.job.is_file()]
    warnings = []
    if ended and manifest.tracking_uri:
        request = {"uri": usable_tracking_uri(manifest.tracking_uri), "experiment": manifest.experiment,
                   "parent_run_id": manifest.parent_run_id,
                   "points": [{"hash": r.hash, "name": r.name, "run_dir": r.run_dir, "run_id": r.mlflow_run_id,
                               "state": r.state, "error": r.error, "tags": run_tags(manifest, r)} for r in ended]}
        try:
            reply = call("sync", request)
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
    if not all(State(r.state).is_terminal for r in manifest.points.values()):
        return None
    failed = any(r.state != State.COMPLETED for r in manifest.points.values())
    status = (State.FAILED if failed else State.COMPLETED).mlflow_status
    try:
        call("finish", {"uri": usable_tracking_uri(manifest.tracking_uri), "runs": {manifest.parent_run_id: status}})
    except RuntimeError as exc:
        return f"could not close the MLflow parent run: {exc}"
    manifest.parent_closed = True
    manifest.save()
    return None


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
    """Run the helper process with a JSON request; returns its JSON reply."""
    try:
        proc = subprocess.run([sys.executable, "-m", __name__, command], input=json.dumps(request),
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"MLflow did not answer within {TIMEOUT_S} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(last[:300])
    replies = [line for line in proc.stdout.splitlines() if line.startswith(REPLY_MARK)]
    if not replies:
        raise RuntimeError("no reply from the tracking helper")
    return json.loads(replies[-1].removeprefix(REPLY_MARK))


# --- helper process: imports mlflow ---------------------------------------------------------

def prepare(request: dict) -> dict:
    """Create (or reuse) the parent run and one child run per point; returns their ids."""
    from workflow.node.tracker import client, experiment_id

    mlflow = client(request["uri"])
    exp = experiment_id(mlflow, request["experiment"], request["uri"])
    parent = request.get("parent_run_id")
    if not parent:
        parent = mlflow.create_run(exp, run_name=request["sweep"], tags=request["tags"]).info.run_id
    else:
        mlflow.update_run(parent, status="RUNNING")
    runs = {}
    for point in request["points"]:
        if point.get("run_id"):
            runs[point["hash"]] = point["run_id"]
            continue
        tags = {**point["tags"], "mlflow.parentRunId": parent}
        run = mlflow.create_run(exp, run_name=point["name"], tags=tags)
        mlflow.update_run(run.info.run_id, status="SCHEDULED")
        runs[point["hash"]] = run.info.run_id
    return {"parent_run_id": parent, "experiment_id": exp, "runs": runs}


def finish_runs(request: dict) -> dict:
    """Set the final status of runs: {"uri", "runs": {run_id: status}}."""
    from workflow.node.tracker import client

    mlflow = client(request["uri"])
    for run_id, status in request["runs"].items():
        mlflow.set_terminated(run_id, status)
    return {"done": len(request["runs"])}


def sync(request: dict) -> dict:
    """Send every point's unsent spool rows into its run (created if the job never reached MLflow),
    then close runs whose job has ended: {"uri", "experiment", "parent_run_id", "points": [...]}."""
    from pathlib import Path

    from workflow.node.tracker import Tracker
    from workflow.rundir import RunDir

    out = {}
    for point in request["points"]:
        tracker = Tracker(request["uri"], point.get("run_id"), RunDir(Path(point["run_dir"])),
                          experiment=request["experiment"], parent_run_id=request.get("parent_run_id"),
                          run_name=point["name"], tags=point["tags"])
        tracker.sync()
        status = State(point["state"]).mlflow_status if point.get("state") else None
        if status:
            if point.get("error"):
                tracker.client.set_tag(tracker.run_id, "error", redact(point["error"])[:5000])
            tracker.client.set_terminated(tracker.run_id, status)
        out[point["hash"]] = {"run_id": tracker.run_id, "sent": tracker.synced}
    return out


def log_run_metrics(request: dict) -> dict:
    """{"uri", "run_id", "metrics": {name: value}} -> logged at step 0 of that run."""
    import time

    from mlflow.entities import Metric

    from workflow.node.tracker import client

    now = int(time.time() * 1000)
    values = [Metric(k, float(v), now, 0) for k, v in request["metrics"].items()]
    client(request["uri"]).log_batch(request["run_id"], metrics=values)
    return {"logged": len(values)}


def log_run_artifact(request: dict) -> dict:
    """{"uri", "run_id", "path"} -> the file attached to that run."""
    from workflow.node.tracker import client

    client(request["uri"]).log_artifact(request["run_id"], request["path"])
    return {"logged": request["path"]}


def child_runs(uri: str, parent_run_id: str) -> list[dict]:
    """The child runs of a sweep: name, status, params and last metric values."""
    from workflow.node.tracker import client

    mlflow = client(uri)
    parent = mlflow.get_run(parent_run_id)
    runs = mlflow.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              max_results=10000)
    return [{"name": r.info.run_name, "status": r.info.status, "run_id": r.info.run_id,
             "params": dict(r.data.params), "metrics": dict(r.data.metrics)} for r in runs]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    handlers = {"prepare": prepare, "finish": finish_runs, "sync": sync, "log": log_run_metrics,
                "artifact": log_run_artifact}
    if command not in handlers:
        print(f"usage: python -m workflow.launch.runs {{{'|'.join(handlers)}}} < request.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    request = json.loads(sys.stdin.read())
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the reply
    try:
        reply = handlers[command](request)
    finally:
        sys.stdout = real_stdout
    real_stdout.write(REPLY_MARK + json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
