"""QLoRA and ``deepspeed.stage: auto`` through the command line: refusals on CPU-only resources and
with ZeRO-3, the plan, and the dry run."""

from __future__ import annotations

import pytest

from helpers import run_cli


def test_qlora_is_refused_on_cpu_with_nothing_written(env, tmp_path):
    result = run_cli("run", "jobs/demo.yaml", "lora.quantize=4bit", env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "lora.quantize" in result.stderr and "CPU-only" in result.stderr and "'4bit'" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow").exists()


def test_qlora_is_refused_with_zero3(env, tmp_path):
    result = run_cli("run", "jobs/flan-t5-xl-lora.yaml", "lora.quantize=4bit", "deepspeed.stage=3", env=env)
    assert result.returncode != 0 and "ZeRO stage 3" in result.stderr, result.stderr


def test_plan_command_shows_qlora(env):
    plain = run_cli("plan", "jobs/flan-t5-xl-lora.yaml", env=env)
    qlora = run_cli("plan", "jobs/flan-t5-xl-lora.yaml", "lora.quantize=4bit", env=env)
    assert plain.returncode == 0 and qlora.returncode == 0, qlora.stderr
    chosen = [next(l for l in r.stdout.splitlines() if "(chosen)" in l) for r in (plain, qlora)]
    assert chosen[0] != chosen[1]


def test_auto_is_shown_in_the_dry_run(env, tmp_path):
    result = run_cli("run", "jobs/flan-t5-xxl-zero3.yaml", "deepspeed.stage=auto", "--dry_run", env=env)
    assert result.returncode == 0, result.stderr
    assert "deepspeed.stage auto -> ZeRO-2: 68.0 GiB/GPU" in result.stdout
    chosen = next(l for l in result.stdout.splitlines() if "(chosen)" in l)
    assert "ZeRO-2" in chosen and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, needle", [
    (["resources.gpus_per_node=0", "train.global_batch_size=null"], "a stage of 0, 2 or 3 on CPU-only resources"),
    (["resources.gpu_type=null"], "resources.gpu_type or resources.gpu_mem_gb"),
    (["deepspeed.offload_optimizer=cpu"], "auto chooses the offload"),
])
def test_auto_refusals(args, needle, env, tmp_path):
    result = run_cli("run", "jobs/flan-t5-xxl-zero3.yaml", "deepspeed.stage=auto", *args, env=env)
    assert result.returncode != 0 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()
