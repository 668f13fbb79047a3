"""MLflow tracking: the only module that imports mlflow.

Two users:
- the launcher, through ``python -m workflow.tracking prepare`` in a subprocess (so the CLI
  itself never imports mlflow): creates the experiment, the sweep's parent run and one child
  run per point before submission, so a requeued job logs into the same run;
- the node (global rank 0 only), through ``Tracker``: every param and metric is first appended
  to the point's spool (``metrics.jsonl``), then sent in batches. A tracking failure is logged
  and never raised into training.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from workflow.paths import default_artifact_root, default_tracking_uri
from workflow.secrets import redact
from workflow.states import State

log = logging.getLogger("workflow.tracking")

# Bounded HTTP behaviour: an outage costs seconds, not the 4-minute default retry loop.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
RETRY_AFTER_S = 30.0
REPLY_MARK = "@@reply "
PARAM_VALUE_LIMIT = 6000


def _client(uri: str):
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = default_artifact_root() if uri == default_tracking_uri() else None
    return client.create_experiment(name, artifact_location=location)


def prepare(request: dict) -> dict:
    """Create (or reuse) the parent run and one child run per point; returns their ids."""
    client = _client(request["uri"])
    exp = _experiment_id(client, request["experiment"], request["uri"])
    parent = request.get("parent_run_id")
    if not parent:
        run = client.create_run(exp, run_name=request["sweep"], tags=request["tags"])
        parent = run.info.run_id
    else:
        client.update_run(parent, status="RUNNING")
    runs = {}
    for point in request["points"]:
        if point.get("run_id"):
            runs[point["hash"]] = point["run_id"]
            continue
        tags = {**request["tags"], **point["tags"], "mlflow.parentRunId": parent}
        run = client.create_run(exp, run_name=point["name"], tags=tags)
        client.update_run(run.info.run_id, status="SCHEDULED")
        runs[point["hash"]] = run.info.run_id
    return {"parent_run_id": parent, "experiment_id": exp, "runs": runs}


def finish_runs(request: dict) -> dict:
    """Set the final status of runs: {"uri", "runs": {run_id: status}}."""
    client = _client(request["uri"])
    for run_id, status in request["runs"].items():
        client.set_terminated(run_id, status)
    return {"done": len(request["runs"])}


def child_runs(uri: str, parent_run_id: str) -> list[dict]:
    """The child runs of a sweep: name, status, params and last metric values."""
    client = _client(uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              max_results=10000)
    return [{"name": r.info.run_name, "status": r.info.status, "run_id": r.info.run_id,
             "params": dict(r.data.params), "metrics": dict(r.data.metrics)} for r in runs]


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Tracker:
    """Rank-0 logger: spool first, then MLflow; never raises into training."""

    def __init__(self, uri: str, run_id: str | None, spool: Path, enabled: bool = True,
                 experiment: str = "t5-finetune", parent_run_id: str | None = None,
                 run_name: str | None = None, tags: dict | None = None):
        self.uri, self.run_id, self.spool, self.enabled = uri, run_id, spool, enabled
        self.experiment, self.parent_run_id, self.run_name = experiment, parent_run_id, run_name
        self.tags = dict(tags or {})
        self.client = None
        self.next_try = 0.0
        self.errors = 0
        self.state_path = spool.with_name("tracking.json")
        saved = _read_json(self.state_path)
        self.run_id = self.run_id or saved.get("run_id")
        self.synced = int(saved.get("synced", 0))
        rows = _read_spool(spool)
        self.lines = len(rows)
        self.pending: list[dict] = rows[self.synced:]  # spooled by an earlier attempt, never sent

    def start(self) -> None:
        if not self.enabled:
            return
        self._guard("start", self._start)

    def _start(self) -> None:
        self.client = _client(self.uri)
        if not self.run_id:
            exp = _experiment_id(self.client, self.experiment, self.uri)
            tags = dict(self.tags)
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            self.run_id = self.client.create_run(exp, run_name=self.run_name, tags=tags).info.run_id
            self._save_state()
        self.client.update_run(self.run_id, status="RUNNING")
        if self.tags:
            self.client.log_batch(self.run_id, tags=self._tag_objects(self.tags))

    def log_params(self, params: dict) -> None:
        flat = {k: str(v)[:PARAM_VALUE_LIMIT] for k, v in _flatten(params).items()}
        self._record([{"kind": "param", "key": k, "value": v} for k, v in flat.items()])

    def log_metrics(self, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        rows = [{"kind": "metric", "key": k, "value": float(v), "step": int(step), "ts": now}
                for k, v in metrics.items() if isinstance(v, (int, float))]
        self._record(rows)

    def set_tags(self, tags: dict) -> None:
        self._record([{"kind": "tag", "key": k, "value": str(v)} for k, v in tags.items()])

    def log_artifact(self, path: Path) -> None:
        if self.enabled and path.exists():
            self._guard("artifact", lambda: self.client and self.run_id and
                        self.client.log_artifact(self.run_id, str(path)))

    def finish(self, status: str = "FINISHED") -> None:
        if not self.enabled:
            return
        self.next_try = 0.0
        self._flush()
        self._guard("finish", lambda: self.client and self.run_id and
                    self.client.set_terminated(self.run_id, status))

    def _record(self, rows: list[dict]) -> None:
        if not self.enabled or not rows:
            return
        rows = [{**r, "value": redact(r["value"])} if isinstance(r.get("value"), str) else r for r in rows]
        with self.spool.open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        self.lines += len(rows)
        self.pending.extend(rows)
        self._flush()

    def _flush(self) -> None:
        if not self.pending or time.time() < self.next_try:
            return
        if self.client is None or not self.run_id:
            self._guard("reconnect", self._start)
            if self.client is None or not self.run_id:
                return
        batch, self.pending = self.pending, []
        if not self._guard("log", lambda: self._send(batch)):
            self.pending = batch + self.pending
        elif not self.pending:
            self.synced = self.lines
            self._save_state()

    def _send(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException

        metrics = [Metric(r["key"], r["value"], r["ts"], r["step"]) for r in rows if r["kind"] == "metric"]
        params = list({r["key"]: Param(r["key"], r["value"]) for r in rows if r["kind"] == "param"}.values())
        tags = self._tag_objects({r["key"]: r["value"] for r in rows if r["kind"] == "tag"})
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        if tags:
            self.client.log_batch(self.run_id, tags=tags)
        for i in range(0, len(params), 100):
            try:
                self.client.log_batch(self.run_id, params=params[i:i + 100])
            except MlflowException as exc:  # a requeued attempt re-logs params; same values are fine
                if "INVALID_PARAMETER_VALUE" not in str(exc.error_code):
                    raise

    def _save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run_id": self.run_id, "synced": self.synced}))
        os.replace(tmp, self.state_path)

    @staticmethod
    def _tag_objects(tags: dict) -> list:
        from mlflow.entities import RunTag

        return [RunTag(k, str(v)) for k, v in tags.items()]

    def _guard(self, what: str, fn) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # tracking must never kill training
            self.errors += 1
            self.next_try = time.time() + RETRY_AFTER_S
            log.warning("MLflow %s failed (%s: %s); continuing, metrics stay in %s",
                        what, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "", self.spool)
            return False


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_spool(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open() as handle:
            for line in handle:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line from a kill mid-write
    except OSError:
        pass
    return rows


# Node states -> MLflow run statuses, for runs whose job ended without closing its run.
# Our terminal states -> MLflow run statuses.
RUN_STATUS = {State.COMPLETED: "FINISHED", State.FAILED: "FAILED", State.OUT_OF_MEMORY: "FAILED",
              State.CANCELLED: "KILLED", State.TIMEOUT: "KILLED", State.PREEMPTED: "KILLED", State.NODE_FAIL: "KILLED",
              State.UNKNOWN: "KILLED"}


def sync(request: dict) -> dict:
    """Send every point's unsent spool rows into its run (created if the job never reached MLflow),
    then close runs whose job has ended: {"uri", "experiment", "parent_run_id", "points": [...]}."""
    out = {}
    for point in request["points"]:
        run_dir = Path(point["run_dir"])
        tracker = Tracker(request["uri"], point.get("run_id"), run_dir / "metrics.jsonl",
                          experiment=request["experiment"], parent_run_id=request.get("parent_run_id"),
                          run_name=point["name"], tags=point["tags"])
        tracker.client = _client(request["uri"])
        if not tracker.run_id:
            tracker._start()
        tracker.next_try = 0.0
        tracker._flush()
        if tracker.pending:
            raise RuntimeError(f"could not send {len(tracker.pending)} rows of {run_dir}")
        status = RUN_STATUS.get(point.get("state") or "")
        if status:
            if point.get("error"):
                tracker.client.set_tag(tracker.run_id, "error", redact(point["error"])[:5000])
            tracker.client.set_terminated(tracker.run_id, status)
        out[point["hash"]] = {"run_id": tracker.run_id, "sent": tracker.synced}
    return out


def main(argv: list[str]) -> int:
    """``python -m workflow.tracking prepare|finish``: JSON request on stdin, JSON reply on stdout."""
    command = argv[0] if argv else ""
    handlers = {"prepare": prepare, "finish": finish_runs, "sync": sync}
    if command not in handlers:
        print(f"usage: python -m workflow.tracking {{{'|'.join(handlers)}}} < request.json", file=sys.stderr)
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
