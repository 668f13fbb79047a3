"""The GPU suite: the tiny T5 end to end through ``launch.py run`` on one CUDA device, with NCCL
where a process group exists. Skipped without CUDA; run it on a GPU machine with

    python -m pytest tests/gpu

Each test asserts the point COMPLETED, its metrics in MLflow (including the peak GPU memory that
only a CUDA run logs) and its predictions file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.integration,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GPU = {"resources": {"gpus_per_node": 1}, "train": {"precision": "bf16", "max_steps": 300, "eval_steps": 100,
                                                     "save_steps": 100, "logging_steps": 25}}


def spec(tmp_path: Path, name: str, base: str = "jobs/demo.yaml", **over) -> str:
    merged = {"base": str(ROOT / base), **GPU}
    for key, value in over.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(merged))
    return str(path)


def run_gpu(tmp_path: Path, env: dict, name: str, base: str = "jobs/demo.yaml", **over) -> dict:
    result = run_cli("run", spec(tmp_path, name, base, **over), env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = next(iter(json.loads((tmp_path / f"runs/{name}/manifest.json").read_text())["points"].values()))
    run_dir = Path(record["run_dir"])
    assert record["state"] == "COMPLETED"
    record["log"] = (run_dir / "log.txt").read_text()
    record["results"] = json.loads((run_dir / "eval_results.json").read_text())
    record["predictions"] = json.loads((run_dir / "predictions.json").read_text())
    assert record["predictions"], "no predictions written"
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}").get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert {"loss", "eval_loss", "gpu_peak_memory_gb"} <= set(run.data.metrics), sorted(run.data.metrics)
    assert run.data.metrics["gpu_peak_memory_gb"] > 0
    from workflow.node import versions

    drift = versions.mismatches(versions.installed(), versions.pins())
    assert run.data.tags.get("version_mismatch", "") == "; ".join(drift), "the job must report version drift"
    record["mlflow"] = run
    return record


def test_nccl_collective_takes_the_rank_device():
    """The preemption check on a real NCCL group: the old CPU tensor fails, the fix works."""
    code = """
import os, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29531", RANK="0", WORLD_SIZE="1")
torch.cuda.set_device(0)
dist.init_process_group("nccl")
from workflow.node.hf import reduce_max
assert reduce_max(True, torch.device("cuda:0")) is True and reduce_max(False, torch.device("cuda:0")) is False
try:
    dist.all_reduce(torch.tensor([1]))
    print("CPU-TENSOR-ACCEPTED")
except Exception as exc:
    print("CPU-TENSOR-REFUSED", type(exc).__name__)
dist.destroy_process_group()
print("OK")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr
    print(done.stdout)


def test_bf16_without_deepspeed(tmp_path, env):
    record = run_gpu(tmp_path, env, "bf16")
    assert record["results"]["exact_match"] >= 0.8, record["results"]
    assert "peak GPU memory reserved" in record["log"]


def test_flex_attention_fused_norm_and_compiled_blocks_in_bf16(tmp_path, env):
    """The speed options on CUDA, all at once: FlexAttention (Triton kernels, the position bias
    in the score_mod), the fused RMSNorm and the compiled blocks train as well as the default."""
    record = run_gpu(tmp_path, env, "fast", speed={"attention": "flex_attention", "fused_rms_norm": True,
                                                    "compile": True})
    assert record["results"]["exact_match"] >= 0.8, record["results"]
    assert "T5 blocks compiled (regional)" in record["log"] and "flex_attention cannot train" not in record["log"]
    flex = "from workflow.node import speed; import torch; from workflow.spec import SpeedSpec\n" \
           "assert speed.attention(SpeedSpec(attention='flex_attention')) == speed.FLEX"
    done = subprocess.run([sys.executable, "-c", flex], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_zero2(tmp_path, env):
    record = run_gpu(tmp_path, env, "zero2", deepspeed={"enabled": True, "stage": 2})
    assert record["results"]["exact_match"] >= 0.8, record["results"]
    assert record["mlflow"].data.params["deepspeed.enabled"] == "True"


def test_zero3_consolidated_save_reload_generate(tmp_path, env):
    record = run_gpu(tmp_path, env, "zero3", deepspeed={"enabled": True, "stage": 3})
    assert "generating with the consolidated model" in record["log"]
    assert record["results"]["exact_match"] >= 0.8, record["results"]
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder = Path(record["run_dir"], "model")
    model = AutoModelForSeq2SeqLM.from_pretrained(str(folder), dtype=torch.bfloat16).cuda().eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    prompt = record["predictions"][0]
    out = model.generate(**tokenizer([prompt["prompt"]], return_tensors="pt").to("cuda"), max_new_tokens=24)
    assert tokenizer.decode(out[0], skip_special_tokens=True) == prompt["samples"][0]


def test_zero3_with_cpu_offload(tmp_path, env):
    record = run_gpu(tmp_path, env, "offload", train={"max_steps": 60, "eval_steps": 30, "save_steps": 30},
                     deepspeed={"enabled": True, "stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu"})
    assert "step 60/60" in record["log"]


def test_lora_and_export_merge(tmp_path, env):
    record = run_gpu(tmp_path, env, "lora", train={"learning_rate": 1e-2},
                     lora={"r": 8, "alpha": 16, "target_modules": ["q", "k", "v", "o", "wi", "wo"]})
    assert (Path(record["run_dir"]) / "model/adapter_config.json").is_file()
    result = run_cli("export", "lora", env=env, timeout=600)
    assert result.returncode == 0 and "lora-merged" in result.stdout, result.stdout + result.stderr
    assert float(result.stdout.split("max |logit difference| ")[1].split()[0]) <= 1e-5


def test_qlora_4bit_trains_and_exports_full_precision(tmp_path, env):
    pytest.importorskip("bitsandbytes")
    record = run_gpu(tmp_path, env, "qlora", train={"learning_rate": 1e-2},
                     lora={"r": 8, "alpha": 16, "target_modules": ["q", "k", "v", "o", "wi", "wo"],
                           "quantize": "4bit"})
    params = record["mlflow"].data.params
    assert 0 < int(params["model.trainable_parameters"]) < int(params["model.parameters"])
    result = run_cli("export", "qlora", env=env, timeout=600)
    assert result.returncode == 0 and "lora-merged" in result.stdout, result.stdout + result.stderr
    from transformers import AutoModelForSeq2SeqLM

    merged = AutoModelForSeq2SeqLM.from_pretrained(str(Path(record["run_dir"]) / "export"))
    assert all(p.dtype in (torch.float32, torch.bfloat16) for p in merged.parameters())


def test_classifier(tmp_path, env):
    record = run_gpu(tmp_path, env, "clf", base="jobs/classifier.yaml")
    assert record["results"]["roc_auc"] >= 0.95, record["results"]


def test_usr2_preemption_resumes_on_the_gpu_into_the_same_run(tmp_path, env):
    from local_preemption import preempt_then_resume

    args = ("resources.gpus_per_node=1", "train.precision=bf16", "train.max_steps=1500", "train.save_steps=5000",
            "train.eval_steps=5000", "train.logging_steps=20")
    p = preempt_then_resume(env, tmp_path / "runs", "jobs/demo.yaml", *args, at_step=200)
    assert p.first["state"] == "PREEMPTED" and p.second["state"] == "COMPLETED"
    assert p.second["mlflow_run_id"] == p.first["mlflow_run_id"]
    assert "resuming from" in p.log and "peak GPU memory reserved" in p.log
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(p.second["mlflow_run_id"], "loss")]
    assert steps == list(range(20, 1501, 20))


def test_a_cuda_out_of_memory_is_named_and_measured():
    """A real CUDA OOM: named oom_gpu, and its measured need (the peak plus the allocation that
    failed), which the retry's re-plan uses, is at least what it tried to allocate."""
    from workflow import failures

    held = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MiB: a peak above zero
    free = torch.cuda.mem_get_info()[0]
    try:
        torch.empty(free * 4, dtype=torch.uint8, device="cuda")
    except torch.OutOfMemoryError as exc:
        cause, _ = failures.of_exception(exc)
        need = failures.gpu_need_gb(exc)
    del held
    assert cause == failures.Cause.OOM_GPU
    assert need is not None and need >= free * 4 / 2**30, (need, free)
