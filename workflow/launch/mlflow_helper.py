"""The MLflow helper process, ``python -m workflow.launch.mlflow_helper register|reconcile|log|artifact``:
the launcher's MLflow client (``workflow.launch.mlflow_client``) starts it with a JSON request on
stdin and reads a JSON reply from stdout, so the launcher never imports mlflow. It uses the
shared tracking module (``workflow.tracking``) to open the store, nest runs and send spooled rows.
``compare`` reads a sweep's runs in-process through ``child_runs``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from workflow.jsonio import write_json
from workflow.launch.mlflow_client import HELPER, REPLY_MARK, TIMEOUT_S
from workflow.rundir import RunDir
from workflow.secrets import last_words, redact
from workflow.tracking import PARENT_TAG, Tracker, client, experiment_id, nest_run


def register_parent(request: dict) -> dict:
    """The registering helper (``register``): its reply, or its error with the tags it would have
    set, goes to ``reply_file`` for the manifest and the jobs; it gives up after TIMEOUT_S."""
    import os
    import signal

    try:
        os.nice(10)  # background work: the submission it runs beside (and sbatch, slurmctld) come first
    except OSError:
        pass

    def give_up(signum, frame):
        raise TimeoutError(f"MLflow did not answer within {TIMEOUT_S} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(TIMEOUT_S)
    try:
        reply = open_parent_run(request)
    except Exception as exc:  # noqa: BLE001  anything: the jobs and the manifest must learn of it
        reply = {"error": last_words(exc, 300), "tags": request["tags"], "view": request.get("view")}
    finally:
        signal.alarm(0)
    write_json(Path(request["reply_file"]), reply)
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply


def open_parent_run(request: dict) -> dict:
    """Create (or reopen) the sweep's parent run; returns its id."""
    from mlflow.entities import RunTag

    mlflow = client(request["uri"])
    exp = experiment_id(mlflow, request["experiment"], request["uri"])
    if request.get("view"):
        _save_view(mlflow, exp, request["view"])
    parent = request.get("parent_run_id")
    if not parent:
        parent = mlflow.create_run(exp, run_name=request["sweep"], tags=request["tags"]).info.run_id
    else:
        mlflow.update_run(parent, status="RUNNING")
        mlflow.log_batch(parent, tags=[RunTag(k, str(v)) for k, v in request["tags"].items()])
    return {"parent_run_id": parent, "experiment_id": exp}


def _save_view(mlflow, exp: str, view: list[str]) -> None:
    """The sweep's saved view of the runs page (an experiment tag): a view that cannot be saved
    costs the runs link its columns, never the parent run."""
    try:
        mlflow.set_experiment_tag(exp, *view)
    except Exception as exc:  # noqa: BLE001
        logging.getLogger(__name__).warning("saved view not written: %s", last_words(exc, 200))


def reconcile_runs(request: dict) -> dict:
    """The sweep's runs, found by its sweep-id tag (one search per page, not a call per point):
    for each ended point, send its unsent spool rows (creating its run, with the job's start
    time, only if it has none: a job that failed before it started tracking); close the runs
    its job left open, at the job's end time; then the parent's summary, and its end when asked.
    A run the job closed keeps its status and times."""
    mlflow = client(request["uri"])
    parent_id, exp_id = request.get("parent_run_id"), None
    if request.get("create_parent"):  # its registration failed: create it now, and adopt the runs
        made = open_parent_run({**request["create_parent"], "uri": request["uri"], "parent_run_id": None})
        parent_id, exp_id = made["parent_run_id"], made["experiment_id"]
    found = sweep_runs(mlflow, request["experiment"], request["sweep_id"])
    for run_id, _, parent_of_run in found.values():
        if parent_id and parent_of_run != parent_id:  # created before the parent was known
            nest_run(mlflow, parent_id, run_id)
    runs, never_tracked = {}, []
    for point in request["points"]:
        run_id, status, _ = found.get(point["hash"], (point.get("run_id"), None, None))
        rd = RunDir(Path(point["run_dir"]))
        if not run_id and not rd.metrics.exists() and not rd.tracking.exists():
            never_tracked.append(point)
            continue
        tracker = Tracker(request["uri"], run_id, rd, experiment=request["experiment"],
                          parent_run_id=parent_id, run_name=point["name"], tags=point["tags"],
                          start_time=point.get("started_at"))
        if tracker.pending or not tracker.run_id:
            tracker.send_spooled()
        if status is None or tracker.run_id != run_id:  # made now, or not found by its tags
            status = mlflow.get_run(tracker.run_id).info.status
        if status in OPEN_STATUSES:
            if point.get("error"):
                mlflow.set_tag(tracker.run_id, "error", redact(point["error"])[:5000])
            mlflow.set_terminated(tracker.run_id, point["status"], end_time=_ms(point.get("ended_at")))
        runs[point["hash"]] = tracker.run_id
    if never_tracked:
        exp_id = exp_id or experiment_id(mlflow, request["experiment"], request["uri"])
        for point in never_tracked:
            runs[point["hash"]] = _closed_run(mlflow, exp_id, parent_id, point)
    if request.get("parent") and parent_id:
        _update_parent(mlflow, parent_id, request["parent"])
    return {"runs": runs, "parent_run_id": parent_id, "experiment_id": exp_id}


def _update_parent(mlflow, run_id: str, parent: dict) -> None:
    """The parent run's summary of the sweep (metrics, tags, name), and its end when asked."""
    from mlflow.entities import Metric, RunTag

    metrics = [Metric(k, v, _ms(None), parent["step"]) for k, v in parent["metrics"].items()]
    mlflow.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in parent["tags"].items()])
    mlflow.update_run(run_id, name=parent["name"])
    if parent.get("status"):
        mlflow.set_terminated(run_id, parent["status"], end_time=_ms(parent.get("ended_at")))


def _closed_run(mlflow, exp_id: str, parent_id: str | None, point: dict) -> str:
    """The run of a point whose job never tracked (cancelled while it waited, or failed before it
    started): created closed, at the job's times, with its error; two calls, where a job's own
    run takes a tracker's five."""
    tags = dict(point["tags"])
    if point.get("error"):
        tags["error"] = redact(point["error"])[:5000]
    run_id = nest_run(mlflow, parent_id, experiment_id=exp_id, run_name=point["name"], tags=tags,
                      start_time=point.get("started_at") or point.get("ended_at"))
    mlflow.set_terminated(run_id, point["status"], end_time=_ms(point.get("ended_at")))
    return run_id


def sweep_runs(mlflow, experiment: str, sweep_id: str) -> dict[str, tuple[str, str, str | None]]:
    """{point hash: (run id, status, parent run id)} of a sweep's point runs."""
    return {run.data.tags["point_hash"]: (run.info.run_id, run.info.status, run.data.tags.get(PARENT_TAG))
            for run in point_runs(mlflow, experiment, sweep_id)}


def point_runs(mlflow, experiment: str, sweep_id: str):
    """The runs of a sweep's points (not its parent), found by its sweep-id tag, page by page: a
    run whose job started before the parent existed counts too."""
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        yield from (run for run in all_runs(mlflow, exp.experiment_id, f"tags.sweep_id = '{sweep_id}'")
                    if run.data.tags.get("point_hash"))


SEARCH_PAGE = 1000
OPEN_STATUSES = ("RUNNING", "SCHEDULED")


def _ms(seconds: float | None) -> int:
    return int((seconds if seconds is not None else time.time()) * 1000)


def log_run_metrics(request: dict) -> dict:
    """{"uri", "run_id", "metrics": {name: value}} -> logged at step 0 of that run."""
    from mlflow.entities import Metric

    now = _ms(None)
    values = [Metric(k, float(v), now, 0) for k, v in request["metrics"].items()]
    client(request["uri"]).log_batch(request["run_id"], metrics=values)
    return {"logged": len(values)}


def log_run_artifact(request: dict) -> dict:
    """{"uri", "run_id", "path"} -> the file attached to that run."""
    client(request["uri"]).log_artifact(request["run_id"], request["path"])
    return {"logged": request["path"]}


def child_runs(uri: str, experiment: str, sweep_id: str) -> list[dict]:
    """The runs of a sweep's points: name, status, params and last metric values."""
    return [{"name": r.info.run_name, "status": r.info.status, "run_id": r.info.run_id,
             "point_hash": r.data.tags.get("point_hash"),
             "params": dict(r.data.params), "metrics": dict(r.data.metrics)}
            for r in point_runs(client(uri), experiment, sweep_id)]


def all_runs(mlflow, experiment_id: str, filter_string: str):
    """Every run that matches, a search per page (a sweep may have more runs than a page holds)."""
    token = None
    while True:
        page = mlflow.search_runs([experiment_id], filter_string, max_results=SEARCH_PAGE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    handlers = {"register": register_parent, "reconcile": reconcile_runs, "log": log_run_metrics,
                "artifact": log_run_artifact}
    if command not in handlers:
        print(f"usage: python -m {HELPER} {{{'|'.join(handlers)}}} < request.json", file=sys.stderr)
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
