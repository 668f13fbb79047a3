"""Automatic retries: which failed points are due, what a re-plan after out-of-GPU-memory sets,
and which nodes a node failure excludes. The whole path (a failure, a retry, a resumed run) is
tests/integration/test_retry_jobs.py."""

from __future__ import annotations

from workflow.launch import memory, retries
from workflow.launch.manifest import Manifest, PointRecord
from workflow.launch.sweep import Point
from workflow.spec import JobSpec
from workflow.states import State

BASE = {"model_init_path": "google/flan-t5-nosuch", "data_name": "demo.json",
        "resources": {"gpus_per_node": 1}}


def spec(**blocks) -> JobSpec:
    return JobSpec.model_validate({**BASE, **blocks})


def point(job: JobSpec) -> Point:
    return Point(0, "p", job.point_hash(), {}, job)


def failed(job: JobSpec, cause: str, **extra) -> tuple[Point, Manifest]:
    p = point(job)
    manifest = Manifest("s", "s.yaml")
    manifest.points[p.hash] = PointRecord(0, "p", p.hash, "/nonexistent/p", state=State.FAILED, backend=job.backend,
                                          cause=cause, extra=extra)
    return p, manifest


def test_out_of_gpu_memory_halves_the_micro_batch_and_keeps_the_global_batch():
    job = spec(train={"train_batch_size": 8, "gradient_accumulation_steps": 2})
    settings, change, resumes = retries.replan(job)
    assert settings == {"train.train_batch_size": 4, "train.gradient_accumulation_steps": 4} and resumes
    assert change == "train.train_batch_size 8 -> 4, train.gradient_accumulation_steps 2 -> 4"
    after = retries.with_settings(job, settings)
    assert after.samples_per_step == job.samples_per_step and after.point_hash() != job.point_hash()


def test_at_micro_batch_one_the_next_zero_rung_is_taken_and_it_starts_over():
    job = spec(train={"train_batch_size": 1}, deepspeed={"enabled": True, "stage": 2})
    settings, change, resumes = retries.replan(job)
    assert settings["deepspeed.stage"] == 3 and settings["deepspeed.offload_optimizer"] == "none"
    assert not resumes and change == "deepspeed.stage 2 -> 3"
    last = spec(train={"train_batch_size": 1},
                deepspeed={"enabled": True, "stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu"})
    assert retries.replan(last) is None


def test_a_covered_failure_is_due_and_a_retried_point_keeps_its_hash():
    job = spec(train={"train_batch_size": 8}, retry={"on": ["oom_gpu"], "max": 1})
    p, manifest = failed(job, "oom_gpu")
    (due,), notes = retries.due([p], manifest)
    assert notes == [] and due.point.hash == p.hash and due.point.spec.train.train_batch_size == 4
    record = manifest.points[p.hash]
    record.extra[retries.REPLANNED] = due.settings
    assert retries.respec(p, record).spec.train.train_batch_size == 4 and retries.respec(p, record).hash == p.hash
    record.extra[retries.RETRIES] = 1
    assert retries.due([p], manifest) == ([], ["p: failed (oom_gpu) after 1 automatic retry (retry.max 1): "
                                               "not retried"])


def test_uncovered_causes_and_points_without_a_retry_block_are_not_due():
    covered = spec(retry={"on": ["node_fail"]})
    assert retries.due(*_as_args(failed(covered, "code"))) == ([], [])
    assert retries.due(*_as_args(failed(spec(), "node_fail"))) == ([], [])


def test_a_node_failure_on_slurm_excludes_the_nodes_the_job_ran_on():
    job = spec(backend="slurm", retry={"on": ["node_fail", "nccl"]}, slurm={"sbatch": {"exclude": "n9"}})
    p, manifest = failed(job, "node_fail", nodes="n1,n2")
    (due,), _ = retries.due([p], manifest)
    assert due.point.spec.slurm.sbatch == {"exclude": "n9,n1,n2"} and due.change == "excluding n9,n1,n2"
    assert due.point.hash == p.hash


def _as_args(found):
    p, manifest = found
    return [p], manifest


def test_a_measured_need_corrects_the_plan_and_a_deeper_rung_is_taken():
    """flan-t5-xxl on 8 x 80 GiB with ZeRO-2 ran out of memory. The plan says ZeRO-3 (28 GiB)
    is well under ZeRO-2's 48 GiB; but the job measured that it needed 3x the estimate, and 3x
    ZeRO-3 does not fit: the optimizer goes to the host as well."""
    job = JobSpec(model_init_path="google/flan-t5-xxl", data_name="demo.json", backend="slurm",
                  train={"train_batch_size": 1, "max_source_length": 512, "max_target_length": 128,
                         "precision": "bf16"},
                  resources={"gpus_per_node": 8, "gpu_type": "A100-80GB", "mem_gb": 900},
                  deepspeed={"enabled": True, "stage": 2})
    planned = memory.estimate(job).chosen.total_gb
    settings, change, _ = retries.replan(job)
    assert (settings["deepspeed.stage"], settings["deepspeed.offload_optimizer"]) == (3, "none")
    settings, change, _ = retries.replan(job, need_gb=3 * planned)
    assert (settings["deepspeed.stage"], settings["deepspeed.offload_optimizer"]) == (3, "cpu"), change
    assert f"needed at least {3 * planned:.1f} GiB where the plan said {planned:.1f}" in change
    assert retries.replan(job, need_gb=planned / 2)[0] == retries.replan(job)[0], "a need under the plan adds nothing"
