"""SLURM backend, unit level: state mapping, chunking, the golden sbatch script, and status
through fake squeue/sacct binaries at the subprocess boundary (counting their calls)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from workflow.launch import driver
from workflow.launch.backends import slurm
from workflow.launch.early import Started
from workflow.errors import BackendError, SpecError
from workflow.launch.manifest import PointRecord
from workflow.launch.plan import make_plan
from workflow.launch.sweep import expand

from fake_slurm import calls, fake_bin, sweep_of
from helpers import ROOT

GOLDEN = ROOT / "tests/golden"


def test_every_slurm_state_is_mapped():
    for raw, ours in [("PENDING", "PENDING"), ("RUNNING", "RUNNING"), ("COMPLETED", "COMPLETED"),
                      ("FAILED", "FAILED"), ("CANCELLED by 0", "CANCELLED"), ("TIMEOUT", "TIMEOUT"),
                      ("PREEMPTED", "PREEMPTED"), ("OUT_OF_MEMORY", "OUT_OF_MEMORY"), ("NODE_FAIL", "NODE_FAIL"),
                      ("REQUEUED", "PENDING"), ("COMPLETING", "RUNNING"), ("WEIRD", "UNKNOWN")]:
        assert slurm.map_state(raw) == ours, raw


def test_concurrency_cap_is_shared_between_chunks():
    for cap, sizes in [(64, [1000, 1000, 500]), (3, [4, 4, 4]), (100, [4, 4]), (5, [1000, 3])]:
        shares = slurm._share(cap, sizes)
        assert all(1 <= s <= n for s, n in zip(shares, sizes))
        assert sum(shares) <= max(cap, len(sizes))
        assert sum(shares) == min(max(cap, len(sizes)), sum(sizes))


def test_chunks_follow_max_array_size(tmp_path, isolated, fake_slurm):
    plan = make_plan(expand(sweep_of(tmp_path, 10, slurm={"array_parallelism": 5})))
    request = slurm.SlurmBackend().render(plan, plan.sweep.points)
    assert [len(c.hashes) for c in request.chunks] == [4, 4, 2]
    assert [c.parallelism for c in request.chunks] == [2, 2, 1]
    assert "#SBATCH --array=0-3%2" in request.chunks[0].script
    assert "#SBATCH --array=0-1%1" in request.chunks[2].script
    assert sorted(calls(fake_slurm)) == ["scontrol show config", "sinfo -h -o %P|%G"]  # once, side by side


def test_points_that_ask_for_different_resources_go_into_different_arrays(tmp_path, isolated, fake_slurm):
    """Points share their sbatch parameters only when their resources and slurm blocks are the
    same: the base's, or equal ones."""
    sweep_of(tmp_path, 1, backend="slurm")
    path = tmp_path / "res.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "name": "res", "grid": {
        "train.seed": [0, 1, 2], "resources.nodes": [1, 2]}}))
    plan = make_plan(expand(path))
    request = slurm.SlurmBackend().render(plan, plan.sweep.points)
    by_nodes = {c.parameters["nodes"]: len(c.hashes) for c in request.chunks}
    assert by_nodes == {1: 3, 2: 3}, by_nodes
    same = tmp_path / "same.yaml"  # equal blocks built per point still share one array
    same.write_text(yaml.safe_dump({"base": "base.yaml", "name": "same", "grid": {
        "train.seed": [0, 1, 2], "resources.nodes": [2]}}))
    plan = make_plan(expand(same))
    assert [len(c.hashes) for c in slurm.SlurmBackend().render(plan, plan.sweep.points).chunks] == [3]


def test_resources_map_to_sbatch_flags(tmp_path, isolated, fake_slurm):
    spec = {"resources": {"nodes": 2, "gpus_per_node": 8, "cpus_per_task": 6, "mem_gb": 200, "timeout_min": 240},
            "slurm": {"partition": "big", "account": "proj", "qos": "high", "constraint": "a100",
                      "setup": ["module load cuda"], "sbatch": {"exclusive": True}, "srun_args": ["--cpu-bind=none"]}}
    plan = make_plan(expand(sweep_of(tmp_path, 1, **spec)))
    script = slurm.SlurmBackend().render(plan, plan.sweep.points).chunks[0].script
    for line in ("--nodes=2", "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=6", "--mem=200GB",
                 "--time=240", "--partition=big", "--account=proj", "--qos=high", "--constraint=a100",
                 "#SBATCH --exclusive", "--signal=USR2@120"):
        assert line in script, line
    assert "module load cuda" in script and "--cpu-bind=none" in script and "--array" not in script


def test_unknown_partition_and_too_many_gpus_are_refused(tmp_path, isolated, fake_slurm):
    plan = make_plan(expand(sweep_of(tmp_path, 1, slurm={"partition": "debg"})))
    with pytest.raises(BackendError, match="did you mean 'debug'"):
        slurm.SlurmBackend().render(plan, plan.sweep.points)
    plan = make_plan(expand(sweep_of(tmp_path, 1, resources={"gpus_per_node": 5, "mem_gb": 64})))
    with pytest.raises(BackendError, match="at most 4 GPUs per node in partition 'debug'"):
        slurm.SlurmBackend().render(plan, plan.sweep.points)


def test_sbatch_script_matches_the_golden_file(isolated, monkeypatch):
    monkeypatch.setattr(slurm, "cluster_info", lambda started: slurm.ClusterInfo(1001, {}, False))
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    plan = driver.launch_plan(expand(ROOT / "sweeps/lr.yaml", extra={"backend": "slurm"}), allow_dirty=True)
    text = slurm.SlurmBackend().render(plan, plan.sweep.points).describe()
    text = text.replace(str(isolated / "runs"), "<runs>").replace(plan.code.root.name, "<code digest>")
    golden = GOLDEN / "sbatch_lr.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "the sbatch script changed; rerun with UPDATE_GOLDEN=1 if intended"


def record(index: int, job_id: str, run_dir: Path) -> PointRecord:
    return PointRecord(index=index, name=f"p{index}", hash=f"h{index}", run_dir=str(run_dir), state="PENDING",
                       backend="slurm", job_id=job_id)


def test_status_uses_one_squeue_and_one_sacct_for_the_whole_sweep(tmp_path, fake_slurm):
    fake_bin(fake_slurm, "squeue", "7_3|RUNNING|1:02|None\n7_[4,11-12%2]|PENDING|0:00|Priority")
    fake_bin(fake_slurm, "sacct", "7_0|COMPLETED|00:01:00|0:0\n7_1|FAILED|00:00:10|1:0\n7_2|CANCELLED by 0|00:00:05|0:15\n"
                                  "8|TIMEOUT|01:00:00|0:0\n7_[5-9%2]|PENDING|00:00:00|0:0")
    (tmp_path / "p9").mkdir()
    (tmp_path / "p9/state.json").write_text('{"state": "COMPLETED"}')
    records = [record(i, f"7_{i}", tmp_path / f"p{i}") for i in range(5)] + [
        record(8, "8", tmp_path / "p8"), record(9, "9", tmp_path / "p9"), record(10, "10", tmp_path / "p10")]
    states = slurm.SlurmBackend().poll(records)
    assert {h: s.state for h, s in states.items()} == {
        "h0": "COMPLETED", "h1": "FAILED", "h2": "CANCELLED", "h3": "RUNNING", "h4": "PENDING",
        "h8": "TIMEOUT", "h9": "COMPLETED", "h10": "UNKNOWN"}
    assert states["h3"].elapsed_s == 62
    assert sorted(c.split()[0] for c in calls(fake_slurm)) == ["sacct", "squeue"]  # side by side: either first
    assert all(" -r " not in c for c in calls(fake_slurm)), "pending array tasks come folded, one line an array"


def test_folded_pending_tasks_are_expanded():
    assert slurm._tasks("7_[0-2,5,9-10%4]") == ["7_0", "7_1", "7_2", "7_5", "7_9", "7_10"]
    parsed = slurm._parse("7_[1-2]|PENDING|0:00\n7_0|RUNNING|1:00")
    assert {k: v[0] for k, v in parsed.items()} == {"7_0": "RUNNING", "7_1": "PENDING", "7_2": "PENDING"}
    cancelled = slurm._parse("7_[0-1%2]|CANCELLED by 0|00:00:00\n7_1|COMPLETED|00:01:00")  # sacct
    assert {k: v[0] for k, v in cancelled.items()} == {"7_0": "CANCELLED", "7_1": "COMPLETED"}, "a task's own line wins"


def test_durations():
    assert slurm._seconds("1-02:03:04") == 93784 and slurm._seconds("05:06") == 306 and slurm._seconds("") is None


def test_master_port_is_per_job_and_outside_the_ephemeral_range():
    from workflow.node.slurm_task import master_port

    ports = {master_port(f"{1000 + i}_{t}") for i in range(200) for t in range(5)}
    assert all(20000 <= p < 32000 for p in ports) and len(ports) > 900
    assert master_port("4242") == master_port("4242")


def test_a_sweep_beyond_the_clusters_job_limits_is_refused(tmp_path, isolated, fake_slurm):
    fake_bin(fake_slurm, "scontrol", "MaxArraySize = 2\nMaxJobCount = 3")
    sweep = expand(sweep_of(tmp_path, 7, backend="slurm"))
    with pytest.raises(SpecError) as caught:
        make_plan(sweep, cluster=Started())
    text = "\n".join(p.render() for p in caught.value.problems)
    assert "max_points: expected at most MaxArraySize 2 x MaxJobCount 3 = 6 points on this cluster, got 7 points" \
        in text
    make_plan(expand(sweep_of(tmp_path, 6, backend="slurm")), cluster=Started())


@pytest.mark.parametrize("setup, python", [
    (["source /opt/venvs/t5/bin/activate"], "/opt/venvs/t5/bin/python"),
    (["module load cuda/12", "conda activate t5"], "python"),
    (["export NCCL_DEBUG=WARN"], None),
])
def test_the_node_runs_the_python_that_slurm_setup_activates(setup, python):
    import sys

    from workflow.launch.backends.slurm import node_python
    from workflow.spec import SlurmSpec

    assert node_python(SlurmSpec(setup=setup)) == (python or sys.executable)
    assert node_python(SlurmSpec(setup=setup, python="/x/python")) == "/x/python"
