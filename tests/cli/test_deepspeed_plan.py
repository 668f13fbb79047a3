"""The memory planner and the DeepSpeed and LoRA checks, through the command line: the plan of the
shipped large specs, a config that cannot fit, and bad input."""

from __future__ import annotations

import pytest

from helpers import run_cli
from workflow.launch.memory import model_states_gb, t5_config, t5_params


def test_plan_of_xxl_zero3_matches_deepspeed_estimator(env):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    size = t5_params(t5_config("google/flan-t5-xxl"))
    assert round(size.total / 1e9, 3) == 11.135
    ours, _ = model_states_gb(size, 3, 4, 1, False, False)
    theirs = estimate_zero3_model_states_mem_needs(size.total, size.largest_layer, 4, 1, False, False)[1] / 2**30
    assert abs(ours - theirs) / theirs < 0.05 and abs(ours - 47.2) < 0.1
    result = run_cli("plan", "jobs/flan-t5-xxl-zero3.yaml", env={**env, "COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    chosen = next(l for l in result.stdout.splitlines() if "(chosen)" in l)
    assert "ZeRO-3" in chosen and "47.2" in chosen


@pytest.mark.parametrize("path", ["jobs/flan-t5-xxl-zero3.yaml", "jobs/flan-t5-xxl-zero3-2x8.yaml",
                                  "jobs/flan-t5-xl-lora.yaml"])
def test_example_specs_validate_and_plan(path, env):
    result = run_cli("plan", path, env=env)
    assert result.returncode == 0 and "model states" in result.stdout and "does not fit" not in result.stdout


def test_a_config_that_cannot_fit_is_refused_with_a_suggestion(env, tmp_path):
    result = run_cli("run", "jobs/flan-t5-xxl-zero3.yaml", "deepspeed.stage=2", "resources.gpu_type=A100-40GB",
                     env=env)
    assert result.returncode != 0 and "GiB per GPU" in result.stderr and "fits" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()
    dry = run_cli("run", "jobs/flan-t5-xxl-zero3.yaml", "deepspeed.stage=2", "resources.gpu_type=A100-40GB",
                  "--dry_run", env=env)
    assert dry.returncode == 0 and "does not fit" in dry.stdout


def test_plan_and_run_refuse_a_job_whose_host_memory_does_not_fit(env, tmp_path):
    """4 nodes x 8 GPUs with ZeRO-2's optimizer offload: DeepSpeed's estimate of a node's host
    memory is far above the job's mem_gb of 400 GiB."""
    args = ("jobs/flan-t5-xxl-zero3.yaml", "resources.nodes=4", "resources.gpus_per_node=8", "deepspeed.stage=2",
            "deepspeed.offload_optimizer=cpu", "train.gradient_accumulation_steps=1")
    plan = run_cli("plan", *args, env=env)
    assert plan.returncode != 0 and "Traceback" not in plan.stderr, plan.stderr
    assert "no (host)" in plan.stdout and "does not fit 400 GiB of host memory a node" in plan.stdout
    assert "jobs/flan-t5-xxl-zero3.yaml:resources.mem_gb" in plan.stderr and "got 400 GiB" in plan.stderr
    run = run_cli("run", *args, env=env)
    assert run.returncode != 0 and "raise resources.mem_gb to" in run.stderr, run.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow").exists()


@pytest.mark.parametrize("args, needle", [
    (["deepspeed.stage=1"], "0, 2 or 3"),
    (["deepspeed.offload_param=cpu"], "offload_param needs stage 3"),
    (["deepspeed.fp16=true", "deepspeed.bf16=true"], "fp16 and bf16 cannot both"),
    (["lora.target_modules=[q, query_proj]"], "'query_proj' (not in the model)"),
    (["train.global_batch_size=100", "resources.tasks_per_node=2"], "train.global_batch_size: expected micro batch 32 x accumulation 1 x world size 2 = 64 (a multiple of 64), got 100"),
])
def test_bad_deepspeed_and_lora_input(args, needle, env, tmp_path):
    result = run_cli("run", "jobs/demo.yaml", "deepspeed.enabled=true", *args, env=env)
    assert result.returncode != 0 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()
