"""MLflow, shared by the node and the launcher's MLflow helper process: the one place that opens a
tracking store (``client``; a new sqlite store is created once, under a file lock), that nests a
run under its parent (``nest_run``, the only writer of MLflow's parent tag), and the tracker.

The tracker (global rank 0 only) first appends every param and metric to the point's spool
(``metrics.jsonl``), then sends them in batches; a tracking failure is logged and never raised
into training. ``send_spooled()`` sends whatever is still spooled: the launcher's MLflow helper
calls it for points whose job could not reach MLflow. mlflow is imported inside the functions.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from workflow.jsonio import append_jsonl, read_json, read_jsonl, write_json
from workflow.metrics import LIVE
from workflow.paths import default_artifact_root, default_tracking_uri
from workflow.rundir import RunDir
from workflow.secrets import redact
from workflow.tree import flatten

log = logging.getLogger("workflow.tracking")

# Bounded HTTP behaviour: an outage costs seconds, not the 4-minute default retry loop.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
RETRY_AFTER_S = 30.0
PARAM_VALUE_LIMIT = 6000


MODEL_PATH_TAG = "model.path"  # a run's final model folder (the recipe sets it)
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under the run it names


def client(uri: str):
    """An MLflow client of the store at ``uri``; a new sqlite store is created first (once)."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    db = Path(uri.removeprefix("sqlite:///"))
    with _store_lock(db, fcntl.LOCK_SH if _has_store(db) else fcntl.LOCK_EX):
        mlflow_client = MlflowClient(tracking_uri=uri)
        mlflow_client.search_experiments(max_results=1)  # opens the store (a new one: created, migrated)
    return mlflow_client


def _has_store(db: Path) -> bool:
    return db.is_file() and db.stat().st_size > 0


@contextmanager
def _store_lock(db: Path, kind: int):
    """A new sqlite store is created (its tables migrated) by one process, holding an exclusive
    lock on ``<db>.lock``: processes that open a new store at once (the launcher's helper, jobs,
    predict) would otherwise migrate the same database together and fail. A store that exists is
    opened under a shared lock, granted at once unless its creation is under way."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, kind)  # released when the file closes
        yield


def experiment_id(mlflow_client, name: str, uri: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = default_artifact_root() if uri == default_tracking_uri() else None
    # MLflow 3 sorts experiments into GenAI and model-training ones by this tag (3.17's UI picks its
    # view from the URL instead: the launcher's links ask for the training runs).
    return mlflow_client.create_experiment(name, artifact_location=location,
                                           tags={"mlflow.experimentKind": "custom_model_development"})


def nest_run(mlflow_client, parent_run_id: str | None, run_id: str | None = None, *, experiment_id: str = "",
             run_name: str | None = None, tags: dict | None = None, start_time: float | None = None) -> str:
    """A run under its parent (a point's under its sweep's, a prediction's under its point's), and
    the one writer of MLflow's parent tag: the existing run ``run_id`` (made before its parent was
    known) is moved under ``parent_run_id``; without one, a run is created there (``start_time``
    in s: when it began, if it is created later). Returns the run's id."""
    parent = {PARENT_TAG: parent_run_id} if parent_run_id else {}
    if run_id:
        if parent:
            mlflow_client.set_tag(run_id, PARENT_TAG, parent_run_id)
        return run_id
    start = int(start_time * 1000) if start_time else None
    return mlflow_client.create_run(experiment_id, start_time=start, run_name=run_name,
                                    tags={**(tags or {}), **parent}).info.run_id


class Tracker:
    """Rank-0 logger: spool first, then MLflow; never raises into training."""

    def __init__(self, uri: str, run_id: str | None, rd: RunDir, enabled: bool = True,
                 experiment: str = "t5-finetune", parent_run_id: str | None = None,
                 run_name: str | None = None, tags: dict | None = None, start_time: float | None = None):
        """``start_time`` (s): when the run began, if it is created later than that (default: now)."""
        self.uri, self.rd, self.enabled = uri, rd, enabled
        self.start_time = start_time
        self.spool = rd.metrics
        self.experiment, self.parent_run_id, self.run_name = experiment, parent_run_id, run_name
        self.tags = dict(tags or {})
        self.client = None
        self.next_try = 0.0
        self.errors = 0
        saved = read_json(rd.tracking)
        self.run_id = run_id or saved.get("run_id")
        self.synced = int(saved.get("synced", 0))
        rows = read_jsonl(self.spool)
        self.lines = len(rows)
        self.pending: list[dict] = rows[self.synced:]  # spooled by an earlier attempt, never sent

    def start(self) -> None:
        if not self.enabled:
            return
        self._guard("start", self._start)

    def _start(self) -> None:
        """The job starts (or resumes) its run: create it if need be, mark it RUNNING, tag it."""
        self._connect()
        self.client.update_run(self.run_id, status="RUNNING")
        if self.tags:
            self.client.log_batch(self.run_id, tags=self._tag_objects(self.tags))

    def _connect(self) -> None:
        """A client, and the run: the one this point already has, else a new one."""
        self.client = client(self.uri)
        if not self.run_id:
            exp = experiment_id(self.client, self.experiment, self.uri)
            self.run_id = nest_run(self.client, self.parent_run_id, experiment_id=exp, run_name=self.run_name,
                                   tags=self.tags, start_time=self.start_time)
            self._save_state()

    def log_params(self, params: dict) -> None:
        flat = {k: str(v)[:PARAM_VALUE_LIMIT] for k, v in flatten(params).items()}
        self._record([{"kind": "param", "key": k, "value": v} for k, v in flat.items()])

    def log_metrics(self, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        rows = [{"kind": "metric", "key": k, "value": float(v), "step": int(step), "ts": now}
                for k, v in metrics.items() if isinstance(v, (int, float))]
        self._record(rows)
        live = next((r for name in LIVE for r in rows if r["key"] == name), None)
        if self.enabled and live:
            self.rd.post(step=live["step"], metric=f"{live['key']}={live['value']:.4g}")

    def set_tags(self, tags: dict) -> None:
        self._record([{"kind": "tag", "key": k, "value": str(v)} for k, v in tags.items()])

    def delete_tags(self, keys: list[str]) -> None:
        """Remove tags an earlier attempt set (its failure), where the run has them."""
        def untag():
            present = self.client.get_run(self.run_id).data.tags
            for key in (k for k in keys if k in present):
                self.client.delete_tag(self.run_id, key)

        if self.enabled and self.client and self.run_id:
            self._guard("untag", untag)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if self.enabled and path.exists():
            self._guard("artifact", lambda: self.client and self.run_id and
                        self.client.log_artifact(self.run_id, str(path), folder))

    def send_spooled(self) -> None:
        """Send everything still spooled now (connecting, and creating the run, if needed; a run
        that exists keeps its status and times); raises RuntimeError when rows remain unsent."""
        self.next_try = 0.0
        if self.client is None or not self.run_id:
            self._connect()
        self._flush()
        if self.pending:
            raise RuntimeError(f"could not send {len(self.pending)} rows of {self.spool}")

    def finish(self, status: str) -> None:
        """End the run (finished, failed or stopped), with the point's log as it is now: the
        launcher's redirect may still add its last lines. Neither is retried in an outage (the
        spool keeps params, metrics and tags; ``reconcile`` closes the run)."""
        if not self.enabled:
            return
        self.next_try = 0.0
        self._flush()
        if not self.pending:  # MLflow answered: an outage costs the log, not a wait for its upload
            self.log_artifact(self.rd.log)
        self._guard("finish", lambda: self.client and self.run_id and
                    self.client.set_terminated(self.run_id, status))

    def _record(self, rows: list[dict]) -> None:
        if not self.enabled or not rows:
            return
        rows = [{**r, "value": redact(r["value"])} if isinstance(r.get("value"), str) else r for r in rows]
        append_jsonl(self.spool, rows)
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
        write_json(self.rd.tracking, {"run_id": self.run_id, "synced": self.synced}, indent=None)

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
