"""Jobs over two nodes, on the script's 2-node cluster (`scripts/slurm-cluster.sh start --nodes 2`):
two slurmd daemons, each in its own network namespace with its own address, hostname and
/etc/hosts. What runs here is the path of the flan-t5-xxl 2x8 job, on CPU and gloo: srun over
both nodes, MASTER_ADDR from the allocation's first host, ranks and world size from SLURM,
tracking and the consolidated save on rank 0 only, every rank's ZeRO shard on the shared path,
and a requeue after USR2 that resumes both ranks from one checkpoint into one MLflow run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli
from slurm_helpers import ensure_default_config, manifest, require_slurm, wait_for, wait_states

pytestmark = pytest.mark.integration

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
TWO_NODES = {"nodes": 2, "tasks_per_node": 1, "cpus_per_task": 1, "mem_gb": 2, "timeout_min": 20}


@pytest.fixture
def cluster(monkeypatch):
    found = require_slurm(nodes=2)
    ensure_default_config(nodes=2)
    monkeypatch.setenv("SLURM_CONF", str(found.conf))
    return found


@pytest.fixture
def env(env, cluster):
    return {**env, **cluster.env}


def submit(tmp_path: Path, env: dict, name: str, train: dict, deepspeed: dict | None = None) -> dict:
    spec = {"base": str(ROOT / "jobs/demo.yaml"), "backend": "slurm", "resources": TWO_NODES,
            "train": {"eval_steps": 5000, "save_steps": 5000, **train}, "tracking": {"experiment": name}}
    if deepspeed:
        spec["deepspeed"] = {"enabled": True, **deepspeed}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_cli("run", str(path), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return next(iter(manifest(tmp_path / "runs", name)["points"].values()))


def finished(tmp_path: Path, env: dict, name: str, timeout: float = 400) -> dict:
    record = next(iter(wait_states(tmp_path / "runs", name, TERMINAL, env, timeout)["points"].values()))
    log = Path(record["run_dir"], "log.txt").read_text()
    assert record["state"] == "COMPLETED", log[-4000:]
    return record


def steps_by_node(cluster, job_id: str) -> dict[str, str]:
    """sacct: job step -> the nodes it ran on (the accounting record of where each rank ran)."""
    out = cluster.run("sacct", "-a", "-n", "-P", "-j", job_id, "-o", "JobID,NodeList,State").stdout
    return {line.split("|")[0]: line.split("|")[1] for line in out.splitlines() if line}


def mlflow_client(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")


def runs_of_point(tmp_path: Path, experiment: str, point_hash: str) -> list:
    client = mlflow_client(tmp_path)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [r for r in found if r.data.tags.get("point_hash") == point_hash]


def test_srun_puts_one_task_on_each_node_at_its_own_address(cluster):
    probe = "import socket; n = socket.gethostname(); print(n, socket.gethostbyname(n))"
    result = cluster.run("srun", "-N2", "--ntasks-per-node=1", "-t", "1", "python3", "-c", probe)
    assert result.returncode == 0, result.stderr
    hosts = dict(line.split() for line in result.stdout.splitlines())
    assert sorted(hosts) == ["node1", "node2"]
    assert len(set(hosts.values())) == 2 and not any(a.startswith("127.") for a in hosts.values()), hosts


def test_zero2_job_over_two_nodes_logs_once_and_shards_on_the_shared_path(tmp_path, env, cluster):
    record = submit(tmp_path, env, "mn-zero2", {"max_steps": 30, "save_steps": 15, "logging_steps": 5},
                    {"stage": 2})
    record = finished(tmp_path, env, "mn-zero2")
    log = Path(record["run_dir"], "log.txt").read_text()
    assert re.search(r"\[rank 0\] INFO workflow: point mn-zero2 \(\w+\) starting on node1, world size 2", log)
    assert re.search(r"\[rank 1\] INFO workflow: point mn-zero2 \(\w+\) starting on node2, world size 2", log)
    assert "[rank 1] INFO workflow.seq2seq: world size 2 (distributed)" in log

    steps = steps_by_node(cluster, record["job_id"])
    assert steps[record["job_id"]] == "node[1-2]" and steps[f"{record['job_id']}.0"] == "node[1-2]", steps

    shards = sorted(p.name for p in Path(record["run_dir"], "checkpoints/checkpoint-30").rglob("*optim_states.pt"))
    assert len(shards) == 2 and "rank_0" in shards[0] and "rank_1" in shards[1], shards

    runs = runs_of_point(tmp_path, "mn-zero2", record["hash"])
    assert [r.info.run_id for r in runs] == [record["mlflow_run_id"]], "one MLflow run for the point"
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags["host"] == "node1", "rank 0 tracks"
    history = mlflow_client(tmp_path).get_metric_history(record["mlflow_run_id"], "loss")
    assert [m.step for m in history] == [5, 10, 15, 20, 25, 30], "each step logged once, by rank 0"


def test_zero3_over_two_nodes_saves_a_consolidated_model_that_loads(tmp_path, env, cluster):
    from transformers import T5ForConditionalGeneration

    submit(tmp_path, env, "mn-zero3", {"max_steps": 10, "logging_steps": 5}, {"stage": 3})
    record = finished(tmp_path, env, "mn-zero3")
    model_dir = Path(record["run_dir"], "model")
    model, info = T5ForConditionalGeneration.from_pretrained(model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    initial = T5ForConditionalGeneration.from_pretrained(Path(env["WF_MOUNT_DIR"], "models/tiny-t5"))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in initial.parameters())
    changed = [n for (n, p), q in zip(model.named_parameters(), initial.parameters()) if not p.equal(q)]
    assert changed, "the saved weights are the trained ones, gathered from both nodes' partitions"
    log = Path(record["run_dir"], "log.txt").read_text()
    assert "[rank 0] INFO workflow.hf: saved the final model" in log


def test_usr2_preemption_resumes_both_ranks_from_one_checkpoint_into_one_run(tmp_path, env, cluster):
    record = submit(tmp_path, env, "mn-pre", {"max_steps": 600, "logging_steps": 20}, {"stage": 2})
    log_path = Path(record["run_dir"], "log.txt")
    wait_for(lambda: log_path.exists() and "step 100/600" in log_path.read_text(), timeout=300)
    assert cluster.run("scancel", "--signal=USR2", record["job_id"]).returncode == 0
    record = finished(tmp_path, env, "mn-pre", timeout=500)
    log = log_path.read_text()
    stopped = set(re.findall(r"\[rank (\d)\] WARNING workflow: stopped at step (\d+) to be requeued", log))
    resumed = dict(re.findall(r"\[rank (\d)\] INFO workflow.hf: resuming from (\S+)", log))
    assert {rank for rank, _ in stopped} == {"0", "1"} and len({step for _, step in stopped}) == 1, stopped
    assert sorted(resumed) == ["0", "1"] and len(set(resumed.values())) == 1, resumed
    step = int(next(iter(stopped))[1])
    assert resumed["0"].endswith(f"checkpoint-{step}") and 100 <= step < 600

    runs = runs_of_point(tmp_path, "mn-pre", record["hash"])
    assert [r.info.run_id for r in runs] == [record["mlflow_run_id"]], "the requeued job logs into the same run"
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags.get("preemptions") == "1"
    history = mlflow_client(tmp_path).get_metric_history(record["mlflow_run_id"], "loss")
    assert [m.step for m in history] == list(range(20, 601, 20)), "no step lost or logged twice"


def test_status_and_cancel_see_both_nodes(tmp_path, env, cluster):
    record = submit(tmp_path, env, "mn-cancel", {"max_steps": 20000, "logging_steps": 5}, {"stage": 2})
    log_path = Path(record["run_dir"], "log.txt")
    wait_for(lambda: log_path.exists() and "step 10/" in log_path.read_text(), timeout=300)
    status = run_cli("status", "mn-cancel", env=env)
    assert status.returncode == 0 and "RUNNING" in status.stdout and "loss=" in status.stdout, status.stdout
    assert steps_by_node(cluster, record["job_id"]).get(f"{record['job_id']}.0") == "node[1-2]"
    ranks = {node: ranks_in(cluster, node) for node in ("node1", "node2")}
    assert all(ranks.values()), f"a rank runs in each node's namespace: {ranks}"

    cancel = run_cli("cancel", "mn-cancel", env=env)
    assert cancel.returncode == 0 and "cancelled 1 point(s)" in cancel.stdout, cancel.stdout + cancel.stderr
    done = wait_states(tmp_path / "runs", "mn-cancel", TERMINAL, env)
    assert next(iter(done["points"].values()))["state"] == "CANCELLED"
    wait_for(lambda: not any(ranks_in(cluster, node) for node in ("node1", "node2")), timeout=60)


def ranks_in(cluster, node: str) -> list[int]:
    """Python processes in a node's network namespace (the job's ranks)."""
    pids = subprocess.run(["ip", "netns", "pids", f"{cluster.name}-{node}"], capture_output=True, text=True).stdout
    return [int(p) for p in pids.split() if _comm(p).startswith("python")]


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_plan_and_dry_run_of_the_2x8_job_on_this_cluster(tmp_path, env, cluster):
    job = "jobs/flan-t5-xxl-zero3-2x8.yaml"
    queue = cluster.run("squeue", "-h", "-o", "%i").stdout  # job ids: the TIME column ticks
    plan = run_cli("plan", job, env={**env, "COLUMNS": "160"})
    assert plan.returncode == 0 and "2x8 GPUs" in plan.stdout and "16 GPUs in all" in plan.stdout

    as_shipped = run_cli("run", job, "--dry_run", env=env)
    assert as_shipped.returncode != 0 and "Traceback" not in as_shipped.stderr
    assert "resources.gpus_per_node: expected at most 2 GPUs per node in partition 'debug', got 8" in \
        as_shipped.stderr, as_shipped.stderr

    fitted = run_cli("run", job, "resources.gpus_per_node=2", "train.gradient_accumulation_steps=8", "--dry_run",
                     env=env)
    assert fitted.returncode == 0, fitted.stderr
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --gpus-per-node=2",
                 "MaxArraySize 1001\n", "dry run: nothing submitted"):
        assert line in fitted.stdout, (line, fitted.stdout)
    assert cluster.run("squeue", "-h", "-o", "%i").stdout == queue and not (tmp_path / "runs").exists()
