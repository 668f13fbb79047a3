"""The SLURM backend against a real SLURM (slurmctld, slurmd, slurmdbd): arrays, a 2-task
distributed job, status/logs/cancel, idempotent re-runs, retries, preemption and chunking."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli
from slurm_helpers import ensure_default_config, manifest, require_slurm, restart_cluster, wait_for, wait_states

pytestmark = pytest.mark.integration

FAST = {"max_steps": 30, "eval_steps": 15, "save_steps": 15, "logging_steps": 5}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()
    ensure_default_config()


def spec_file(tmp_path: Path, name: str = "base.yaml", **over) -> Path:
    spec = {"base": str(ROOT / "jobs/demo.yaml"), "backend": "slurm",
            "train": {**FAST, **over.pop("train", {})},
            "resources": {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 20, **over.pop("resources", {})}, **over}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_file(tmp_path: Path, name: str, body: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "name": name, **body}))
    return path


def mlflow_client(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")


def test_sweep_runs_as_one_array_and_rerun_submits_nothing(tmp_path, env):
    spec_file(tmp_path)
    sweep = sweep_file(tmp_path, "arr", {"grid": {"train.learning_rate": [1e-4, 1e-3, 1e-2]}})
    dry = run_cli("sweep", str(sweep), "--dry_run", env=env)
    assert dry.returncode == 0 and "#SBATCH --array=0-2%3" in dry.stdout, dry.stdout + dry.stderr
    first = run_cli("sweep", str(sweep), env=env)
    assert first.returncode == 0, first.stderr
    assert "submitted 3 point(s)" in first.stdout
    done = wait_states(tmp_path / "runs", "arr", TERMINAL, env)
    records = list(done["points"].values())
    assert {r["state"] for r in records} == {"COMPLETED"}
    arrays = {r["job_id"].split("_")[0] for r in records}
    assert len(arrays) == 1 and sorted(r["job_id"].split("_")[1] for r in records) == ["0", "1", "2"]

    again = run_cli("sweep", str(sweep), env=env)
    assert again.returncode == 0 and "skipped 3 point(s)" in again.stdout and "submitted 0 point(s)" in again.stdout
    assert {r["job_id"] for r in manifest(tmp_path / "runs", "arr")["points"].values()} == {r["job_id"] for r in records}

    client = mlflow_client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    parent = [r for r in runs if r.info.run_id == done["parent_run_id"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == done["parent_run_id"]]
    assert len(runs) == 4 and len(parent) == 1 and len(children) == 3
    assert all(c.info.status == "FINISHED" and c.data.tags["backend"] == "slurm" for c in children)
    wait_for(lambda: client.get_run(done["parent_run_id"]).info.status == "FINISHED", timeout=30)


def test_two_task_distributed_job(tmp_path, env):
    path = spec_file(tmp_path, "dist.yaml", resources={"tasks_per_node": 2})
    result = run_cli("run", str(path), env=env)
    assert result.returncode == 0, result.stderr
    done = wait_states(tmp_path / "runs", "dist", TERMINAL, env)
    record = next(iter(done["points"].values()))
    assert record["state"] == "COMPLETED"
    log = Path(record["run_dir"], "log.txt").read_text()
    assert "[rank 0] INFO workflow.seq2seq: world size 2 (distributed)" in log
    assert "[rank 1] INFO workflow.seq2seq: world size 2 (distributed)" in log
    history = mlflow_client(tmp_path).get_metric_history(record["mlflow_run_id"], "loss")
    assert [m.step for m in history] == [5, 10, 15, 20, 25, 30], "only rank 0 logs, once per step"


def test_status_logs_cancel_and_retry_failed(tmp_path, env):
    spec_file(tmp_path)
    sweep = sweep_file(tmp_path, "life", {"points": [{"train.max_steps": 20000, "train.save_steps": 20000},
                                                     {"train.max_steps": 10}]})
    assert run_cli("sweep", str(sweep), env=env).returncode == 0
    runs = tmp_path / "runs"
    long_dir = Path(next(r for r in manifest(runs, "life")["points"].values() if r["index"] == 0)["run_dir"])
    wait_for(lambda: (long_dir / "metrics.jsonl").exists() and "step 5/" in (long_dir / "log.txt").read_text(),
             timeout=300)
    status = run_cli("status", "life", env=env)
    assert status.returncode == 0 and "RUNNING" in status.stdout and "loss=" in status.stdout, status.stdout
    logs = run_cli("logs", "life", "0", "--tail", "5", env=env)
    assert logs.returncode == 0 and "step" in logs.stdout and len(logs.stdout.strip().splitlines()) <= 7
    cancel = run_cli("cancel", "life", "0", env=env)
    assert cancel.returncode == 0 and "cancelled 1 point(s)" in cancel.stdout, cancel.stdout + cancel.stderr
    done = wait_states(runs, "life", TERMINAL, env)
    states = {r["index"]: r["state"] for r in done["points"].values()}
    assert states == {0: "CANCELLED", 1: "COMPLETED"}
    assert {r["index"]: r["cause"] for r in done["points"].values()} == {0: "cancelled", 1: None}

    old_jobs = {r["index"]: r["job_id"] for r in done["points"].values()}
    retry = run_cli("sweep", str(sweep), "--retry", "failed", env=env)
    assert retry.returncode == 0 and "submitted 1 point(s)" in retry.stdout, retry.stdout + retry.stderr
    after = {r["index"]: r for r in manifest(runs, "life")["points"].values()}
    assert after[1]["job_id"] == old_jobs[1] and after[0]["job_id"] != old_jobs[0]
    assert run_cli("cancel", "life", env=env).returncode == 0


def test_a_failure_its_retry_block_covers_is_resubmitted_by_status_and_completes(tmp_path, env):
    from mlflow.tracking import MlflowClient

    path = spec_file(tmp_path, "again.yaml", retry={"on": ["code"], "max": 1},
                     train={"max_steps": 6, "save_steps": 2, "eval_steps": 6, "logging_steps": 1})
    assert run_cli("run", str(path), env={**env, "WF_INJECT_FAULT": "code@3"}).returncode == 0
    runs = tmp_path / "runs"
    first = next(iter(manifest(runs, "again")["points"].values()))["job_id"]
    done = wait_states(runs, "again", {"COMPLETED"}, env)  # status sees the failure and resubmits the point
    (record,) = done["points"].values()
    assert record["attempt"] == 2 and record["job_id"] != first and record["extra"]["auto_retries"] == 1
    log = Path(record["run_dir"], "log.txt").read_text()
    assert "a failure in the training code" in log and "checkpoint-2" in log.split("attempt 2", 1)[1]
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}").get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["retry.attempt"] == "2"
    assert "failure.cause" not in run.data.tags


def test_usr2_preemption_resumes_into_the_same_run(tmp_path, env):
    path = spec_file(tmp_path, "pre.yaml", train={"max_steps": 900, "save_steps": 5000, "eval_steps": 5000,
                                                  "logging_steps": 20})
    assert run_cli("run", str(path), env=env).returncode == 0
    runs = tmp_path / "runs"
    record = next(iter(manifest(runs, "pre")["points"].values()))
    log_path = Path(record["run_dir"], "log.txt")
    wait_for(lambda: log_path.exists() and "step 100/900" in log_path.read_text(), timeout=300)
    subprocess.run(["scancel", "--signal=USR2", record["job_id"]], check=True)
    done = wait_states(runs, "pre", TERMINAL, env, timeout=500)
    record = next(iter(done["points"].values()))
    assert record["state"] == "COMPLETED"
    log = log_path.read_text()
    assert "preemption requested at step" in log and "resuming from" in log
    saved = int(log.split("resuming from ")[1].split("checkpoint-")[1].split()[0])
    assert 100 <= saved < 900
    history = mlflow_client(tmp_path).get_metric_history(record["mlflow_run_id"], "loss")
    steps = [m.step for m in history]
    assert steps == list(range(20, 901, 20)), "the step count continues; no metric lost or repeated"
    run = mlflow_client(tmp_path).get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags.get("preemptions") == "1"
    state = json.loads(Path(record["run_dir"], "state.json").read_text())
    assert state["state"] == "COMPLETED" and state["preemptions"] == 1


@pytest.fixture
def small_array_cluster():
    restart_cluster(SLURM_MAX_ARRAY_SIZE="2")
    yield
    restart_cluster()


def test_array_chunking_under_small_max_array_size(tmp_path, env, small_array_cluster):
    spec_file(tmp_path, train={"max_steps": 2, "eval_steps": 2, "save_steps": 2, "logging_steps": 1})
    sweep = sweep_file(tmp_path, "chunks", {"grid": {"train.seed": [1, 2, 3, 4, 5]},
                                            "overrides": {"slurm.array_parallelism": 3}})
    dry = run_cli("sweep", str(sweep), "--dry_run", env=env)
    assert "in 3 sbatch submission(s); MaxArraySize 2" in dry.stdout, dry.stdout + dry.stderr
    assert dry.stdout.count("#SBATCH --array=0-1%") == 2 and "#SBATCH --array" in dry.stdout
    assert run_cli("sweep", str(sweep), env=env).returncode == 0
    done = wait_states(tmp_path / "runs", "chunks", TERMINAL, env)
    assert {r["state"] for r in done["points"].values()} == {"COMPLETED"}
    assert len({r["job_id"].split("_")[0] for r in done["points"].values()}) == 3


@pytest.mark.parametrize("override, needle", [("slurm.partition=gpu-nope", "slurm.partition"),
                                              ("resources.gpus_per_node=5", "at most 4 GPUs per node")])
def test_requests_the_cluster_cannot_meet_submit_nothing(tmp_path, env, override, needle):
    path = spec_file(tmp_path, "bad.yaml")
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    result = run_cli("run", str(path), override, env=env)
    assert result.returncode != 0 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow").exists()
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout == before


def test_submission_does_not_wait_for_mlflow_and_status_repairs_the_parent(tmp_path, env):
    """The parent run is registered by a helper the launcher does not wait for. Here MLflow
    accepts connections and never answers: the submission returns at once; the helper gives up
    (parent.json says why); the held jobs then run against a real server and create their runs
    without a parent; the next status creates the parent and attaches them."""
    import socket

    from mlflow.tracking import MlflowClient

    from mlflow_server import MlflowServer, free_port

    port = free_port()
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(("127.0.0.1", port))
    hole.listen(64)  # connections queue in the backlog, and no request is ever read
    env = {**env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    spec_file(tmp_path, slurm={"sbatch": {"hold": True}})
    sweep = sweep_file(tmp_path, "hole", {"grid": {"train.seed": [1, 2]}})
    server = MlflowServer(tmp_path / "server", port)
    try:
        submitted = run_cli("sweep", str(sweep), env=env)
        assert submitted.returncode == 0, submitted.stderr
        assert "submitted 2 point(s)" in submitted.stdout and "parent run is being registered" in submitted.stdout
        parent_file = tmp_path / "runs/hole/parent.json"
        assert not parent_file.exists(), "the launcher returned before the helper had an answer"
        wait_for(lambda: parent_file.exists(), timeout=150)
        reply = json.loads(parent_file.read_text())
        assert "error" in reply and reply["tags"]["sweep"] == "hole", reply

        hole.close()
        server.start()
        jobs = {r["job_id"].split("_")[0] for r in manifest(tmp_path / "runs", "hole")["points"].values()}
        subprocess.run(["scontrol", "release", *jobs], check=True)
        done = wait_states(tmp_path / "runs", "hole", TERMINAL, env)
        assert {r["state"] for r in done["points"].values()} == {"COMPLETED"}, done
        parent = done["parent_run_id"]
        client = MlflowClient(server.uri)
        children = client.search_runs([client.get_experiment_by_name(done["experiment"]).experiment_id],
                                      f"tags.sweep_id = '{done['sweep_id']}'")
        by_id = {r.info.run_id: r for r in children}
        assert parent in by_id and len(by_id) == 3, "one parent and one run per point"
        points = [r for r in children if r.info.run_id != parent]
        assert {r.data.tags["mlflow.parentRunId"] for r in points} == {parent}
        assert {r.info.run_id for r in points} == {r["mlflow_run_id"] for r in done["points"].values()}
        assert by_id[parent].data.tags["points.COMPLETED"] == "2"
    finally:
        hole.close()
        server.kill()


def test_a_10000_point_sweep_on_the_test_cluster(tmp_path, env):
    """Submitted held, in arrays of MaxArraySize; status sees every point from squeue's and
    sacct's folded lines; an outside scancel (not the tool's cancel) shows as CANCELLED for all
    10,000; MLflow has the parent, which counts them, and no run for points that never ran."""
    import re

    from mlflow.tracking import MlflowClient

    n = 10000
    spec_file(tmp_path, slurm={"sbatch": {"hold": True}})
    sweep = sweep_file(tmp_path, "big", {"max_points": n, "grid": {"train.seed": list(range(n))}})
    try:
        submitted = run_cli("sweep", str(sweep), env=env)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        assert f"submitted {n} point(s)" in submitted.stdout
        records = manifest(tmp_path / "runs", "big")["points"].values()
        arrays = sorted({r["job_id"].split("_")[0] for r in records})
        assert len(records) == n and len(arrays) == 10, "arrays of at most MaxArraySize (1001) tasks"
        status = run_cli("status", "big", env=env)
        assert status.returncode == 0 and f"{n} points: PENDING {n}" in status.stdout, status.stdout[-2000:]
        assert len(status.stdout.splitlines()) < 60, "a large sweep shows counts, not 10,000 rows"

        subprocess.run(["scancel", *arrays], check=True)
        done = wait_states(tmp_path / "runs", "big", {"CANCELLED"}, env, timeout=120)
        assert len(done["points"]) == n
        accounted = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(arrays), "-o", "JobID,State"],
                                   env={**env, "SLURM_BITSTR_LEN": "0"}, capture_output=True, text=True).stdout
        tasks = set()
        for job, state in (line.split("|") for line in accounted.splitlines()):
            assert state.startswith("CANCELLED"), (job, state)
            main, _, spec = job.partition("_[")
            for part in re.sub(r"%\d+", "", spec.rstrip("]")).split(","):
                low, _, high = part.partition("-")
                tasks |= {f"{main}_{i}" for i in range(int(low), int(high or low) + 1)}
        assert tasks == {r["job_id"] for r in done["points"].values()}, "sacct accounts for every job"

        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
        parent = client.get_run(done["parent_run_id"])
        assert parent.data.tags["points"] == str(n) and parent.data.tags["points.CANCELLED"] == str(n)
        assert parent.info.status == "KILLED"
        runs = client.search_runs([parent.info.experiment_id], f"tags.sweep_id = '{done['sweep_id']}'")
        assert [r.info.run_id for r in runs] == [parent.info.run_id], "no run for points that never ran"
    finally:
        subprocess.run(["scancel", "--name", "big"], check=False)
