"""Every cause of a failed point, planted on the real SLURM test clusters and read back from
`status` and from MLflow: a time limit, a data error, a USR2 preemption that is not requeued, and
a node taken down under its job (the 2-node cluster), which is retried on the other node.
(A cancelled job and a raised exception are in test_slurm_integration.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli
from slurm_helpers import ensure_default_config, manifest, require_slurm, wait_for, wait_states

pytestmark = pytest.mark.integration

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
LONG = {"max_steps": 20000, "save_steps": 20, "eval_steps": 20000, "logging_steps": 10}


@pytest.fixture
def slurm_env(env):
    require_slurm()
    ensure_default_config()
    return env


def submit(tmp_path: Path, env: dict, name: str, train: dict, resources: dict | None = None,
           sweep: bool = False, **over) -> dict:
    spec = {"base": str(ROOT / "jobs/demo.yaml"), "backend": "slurm", "train": train,
            "resources": {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 20, **(resources or {})},
            "tracking": {"experiment": name}, **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    if sweep:  # a sweep of one point, which `sweep --retry` can address
        path = tmp_path / f"{name}-sweep.yaml"
        path.write_text(yaml.safe_dump({"base": f"{name}.yaml", "name": name, "grid": {"train.seed": [1]}}))
    result = run_cli("sweep" if sweep else "run", str(path), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return next(iter(manifest(tmp_path / "runs", name)["points"].values()))


def ended(tmp_path: Path, env: dict, name: str, timeout: float = 400) -> dict:
    return next(iter(wait_states(tmp_path / "runs", name, TERMINAL, env, timeout)["points"].values()))


def mlflow_run(tmp_path: Path, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}").get_run(run_id)


def status_row(env: dict, sweep: str) -> str:
    """The point's row of `status`, checked to fit 80 columns (links excepted)."""
    out = run_cli("status", sweep, env={**env, "COLUMNS": "80"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(len(line) <= 80 for line in out.stdout.splitlines() if "http" not in line), out.stdout
    return next(line for line in out.stdout.splitlines() if line.startswith("│ 0 "))


def checkpoints(record: dict) -> list[str]:
    return sorted(p.name for p in Path(record["run_dir"], "checkpoints").glob("checkpoint-*"))


def test_a_job_past_its_time_limit_is_named_timeout_and_keeps_its_checkpoint(tmp_path, slurm_env):
    """USR2 comes before the limit; with no requeue left, the job saves a checkpoint and ends."""
    record = submit(tmp_path, slurm_env, "late", LONG, {"timeout_min": 1}, slurm={"max_requeues": 0})
    record = ended(tmp_path, slurm_env, "late", timeout=300)
    log = Path(record["run_dir"], "log.txt").read_text()
    assert record["cause"] == "timeout", (record, log[-3000:])
    row = status_row(slurm_env, "late")
    assert "timeout" in row and "time limit" in row, row
    assert checkpoints(record), "the work done before the limit is saved"
    run = mlflow_run(tmp_path, record["mlflow_run_id"])
    assert run.data.tags["failure.cause"] == "timeout" and run.info.status != "RUNNING", run.data.tags


def test_a_data_file_broken_after_submission_is_named_data(tmp_path, slurm_env, own_mount):
    slurm_env = {**slurm_env, "WF_MOUNT_DIR": str(own_mount)}
    data = own_mount / "data/changing.json"
    data.write_text((own_mount / "data/demo.json").read_text())
    record = submit(tmp_path, slurm_env, "baddata", {"max_steps": 4, "eval_steps": 4, "save_steps": 4},
                    data_name="changing.json", slurm={"sbatch": {"hold": True}})
    data.write_text('{"train": [{"prompt": "a"}')  # truncated while the job waited
    subprocess.run(["scontrol", "release", record["job_id"]], check=True, env={**slurm_env})
    record = ended(tmp_path, slurm_env, "baddata")
    assert record["state"] == "FAILED" and record["cause"] == "data", record
    row = status_row(slurm_env, "baddata")
    assert "│ data " in row and "data.py:" in row and "Malformed JSON" in record["error"], (row, record)
    run = mlflow_run(tmp_path, record["mlflow_run_id"])
    assert run.data.tags["failure.cause"] == "data" and run.info.status == "FAILED"
    assert "data.py:" in run.data.tags["failure.where"]


def test_a_usr2_preemption_that_is_not_requeued_is_named_preempted_and_resumes_on_retry(tmp_path, slurm_env):
    """A cluster that does not requeue (--no-requeue): the preempted job saves a checkpoint and
    ends; the point is `preempted`, and `--retry preempted` resumes it from that checkpoint."""
    submit(tmp_path, slurm_env, "bumped", {**LONG, "max_steps": 300}, slurm={"sbatch": {"no-requeue": True}},
           sweep=True)
    record = next(iter(manifest(tmp_path / "runs", "bumped")["points"].values()))
    log_path = Path(record["run_dir"], "log.txt")
    wait_for(lambda: log_path.exists() and "step 30/300" in log_path.read_text(), timeout=300)
    subprocess.run(["scancel", "--signal=USR2", record["job_id"]], check=True)
    first = ended(tmp_path, slurm_env, "bumped")
    assert first["cause"] == "preempted", (first, log_path.read_text()[-3000:])
    assert "preempted" in status_row(slurm_env, "bumped")
    run = mlflow_run(tmp_path, first["mlflow_run_id"])
    assert run.data.tags["failure.cause"] == "preempted" and run.info.status == "KILLED", run.data.tags
    assert checkpoints(first)

    retry = run_cli("sweep", str(tmp_path / "bumped-sweep.yaml"), "--retry", "preempted", env=slurm_env)
    assert retry.returncode == 0 and "submitted 1 point(s)" in retry.stdout, retry.stdout + retry.stderr
    record = ended(tmp_path, slurm_env, "bumped")
    assert record["state"] == "COMPLETED" and record["job_id"] != first["job_id"], record
    log = log_path.read_text()
    assert "preemption requested at step" in log and "resuming from" in log
    run = mlflow_run(tmp_path, record["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["preemptions"] == "1"
    assert "failure.cause" not in run.data.tags


@pytest.fixture
def two_nodes(env, monkeypatch):
    cluster = require_slurm(nodes=2)
    ensure_default_config(nodes=2)
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    yield cluster, {**env, **cluster.env}
    for node in ("node1", "node2"):  # whatever the test took down comes back
        cluster.run("scontrol", "update", f"nodename={node}", "state=resume")


def test_a_node_taken_down_under_its_job_is_node_fail_and_the_retry_runs_on_the_other_node(tmp_path, two_nodes):
    """The cluster does not requeue by itself here (--no-requeue; with SLURM's JobRequeue=1 it
    requeues on its own and the point simply resumes): the job ends NODE_FAIL, and the retry
    block resubmits it, excluding the node, from its newest checkpoint."""
    cluster, env = two_nodes
    record = submit(tmp_path, env, "downed", {**LONG, "max_steps": 120}, {"mem_gb": 2},
                    slurm={"sbatch": {"no-requeue": True}}, retry={"on": ["node_fail"], "max": 1})
    log_path = Path(record["run_dir"], "log.txt")
    wait_for(lambda: log_path.exists() and "step 30/120" in log_path.read_text(), timeout=300)
    node = cluster.run("squeue", "-h", "-j", record["job_id"], "-o", "%N").stdout.strip()
    assert node in ("node1", "node2"), node
    down = cluster.run("scontrol", "update", f"nodename={node}", "state=down", "reason=test-node-fail")
    assert down.returncode == 0, down.stderr

    notes = []

    def retried() -> bool:  # each status judges the failure once: it resubmits and says so
        out = run_cli("status", "downed", env=env)
        notes.append(out.stdout + out.stderr)
        return "downed: node_fail, retry 1" in notes[-1]

    wait_for(retried, timeout=120, every=2)
    assert f"excluding {node}" in notes[-1], notes[-1]
    done = wait_states(tmp_path / "runs", "downed", {"COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL"}, env)
    (record,) = done["points"].values()
    assert record["state"] == "COMPLETED" and record["attempt"] == 2, record
    ran_on = cluster.run("sacct", "-n", "-X", "-P", "-j", record["job_id"], "-o", "NodeList").stdout.strip()
    assert ran_on and ran_on != node, (ran_on, node)
    log = log_path.read_text()
    assert "resuming from" in log.split("attempt 2", 1)[1]
    run = mlflow_run(tmp_path, record["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["retry.attempt"] == "2"
    assert run.data.tags["retry.change"] == f"excluding {node}" and "failure.cause" not in run.data.tags
