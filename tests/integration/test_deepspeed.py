"""DeepSpeed ZeRO with a real engine on 2 CPU ranks (gloo), LoRA and export.
Kept tiny: ZeRO-3 on gloo is slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli

GOLDEN = ROOT / "tests/golden"
STEPS = {"eval_steps": 10, "save_steps": 10, "logging_steps": 5}


def write_spec(tmp_path: Path, name: str, **over) -> Path:
    spec = {"base": str(ROOT / "jobs/demo.yaml"), "train": {**STEPS, **over.pop("train", {})}, **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_point(tmp_path: Path, env: dict, name: str, **over) -> dict:
    result = run_cli("run", str(write_spec(tmp_path, name, **over)), env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    manifest = json.loads((tmp_path / f"runs/{name}/manifest.json").read_text())
    record = next(iter(manifest["points"].values()))
    record["log"] = Path(record["run_dir"], "log.txt").read_text()
    record["results"] = json.loads(Path(record["run_dir"], "eval_results.json").read_text())
    return record


@pytest.mark.integration
def test_zero2_on_two_ranks_matches_one_process(tmp_path, env):
    single = run_point(tmp_path, env, "single", train={"max_steps": 30, "train_batch_size": 32})
    zero2 = run_point(tmp_path, env, "zero2", train={"max_steps": 30, "train_batch_size": 16},
                      resources={"tasks_per_node": 2}, deepspeed={"enabled": True, "stage": 2})
    assert "world size 2 (distributed), global batch 32" in zero2["log"]
    a, b = single["results"]["best_eval_loss"], zero2["results"]["best_eval_loss"]
    assert abs(a - b) / a < 0.02, (a, b)


@pytest.mark.integration
def test_zero3_partitions_checkpoints_resumes_and_exports(tmp_path, env):
    record = run_point(tmp_path, env, "zero3", train={"max_steps": 10, "save_steps": 5},
                       resources={"tasks_per_node": 2}, deepspeed={"enabled": True, "stage": 3})
    import re

    for rank in (0, 1):
        found = re.search(rf"\[rank {rank}\] INFO workflow.hf: ZeRO-3: parameters partitioned, (\d+) of (\d+)",
                          record["log"])
        assert found, record["log"][-3000:]
        local, total = int(found.group(1)), int(found.group(2))
        assert local < total and abs(2 * local - total) <= 2 * 64, (local, total)  # half each, up to padding
    run_dir = Path(record["run_dir"])
    assert (run_dir / "checkpoints/checkpoint-10/.complete").is_file()

    # resume: the same run directory asked for more steps continues from checkpoint-10
    job = json.loads((run_dir / "job.json").read_text())
    job["spec"]["train"]["max_steps"] = 15
    (run_dir / "job.json").write_text(json.dumps(job))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "workflow.node.run", str(run_dir)]
    done = subprocess.run(torchrun, cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from" in done.stdout and "checkpoint-10" in done.stdout
    assert "step 15/15" in done.stdout and "step 5/15" not in done.stdout

    # the consolidated export equals DeepSpeed's own gather of the last checkpoint
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForSeq2SeqLM

    exported = AutoModelForSeq2SeqLM.from_pretrained(str(run_dir / "model")).state_dict()
    gathered = get_fp32_state_dict_from_zero_checkpoint(str(run_dir / "checkpoints/checkpoint-15"))
    for key, value in gathered.items():
        assert torch.allclose(exported[key], value, atol=1e-6), key


@pytest.mark.integration
def test_zero3_with_cpu_offload_trains(tmp_path, env):
    record = run_point(tmp_path, env, "offload", train={"max_steps": 4, "save_steps": 4, "eval_steps": 2,
                                                        "logging_steps": 2},
                       resources={"tasks_per_node": 2},
                       deepspeed={"enabled": True, "stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu"})
    assert record["state"] == "COMPLETED" and "step 4/4" in record["log"]


@pytest.mark.integration
def test_lora_trains_saves_adapters_and_merges_exactly(tmp_path, env):
    record = run_point(tmp_path, env, "lora", train={"max_steps": 20, "learning_rate": 1e-2},
                       lora={"r": 4, "alpha": 8, "target_modules": ["q", "v"]})
    model_dir = Path(record["run_dir"], "model")
    assert (model_dir / "adapter_config.json").is_file() and not (model_dir / "model.safetensors").exists()
    assert "trainable parameters: " in record["log"]
    from mlflow.tracking import MlflowClient

    params = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}").get_run(record["mlflow_run_id"]).data.params
    assert 0 < int(params["model.trainable_parameters"]) < int(params["model.parameters"])
    result = run_cli("export", "lora", env=env)
    assert result.returncode == 0 and "lora-merged" in result.stdout, result.stdout + result.stderr
    diff = float(result.stdout.split("max |logit difference| ")[1].split()[0])
    assert diff <= 1e-5
    assert (Path(record["run_dir"]) / "export/model.safetensors").is_file()


ZERO3_LOAD = """
import json, os, sys
os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0", WORLD_SIZE="1",
                  LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
import deepspeed, torch
from safetensors.torch import load_file
deepspeed.init_distributed(dist_backend="gloo")
from transformers import Seq2SeqTrainingArguments
from workflow.node import hf
from workflow.node.zero import deepspeed_config
from workflow.spec import JobSpec
spec = JobSpec(model_init_path=sys.argv[1], data_name="unused.json", deepspeed={"enabled": True, "stage": 3})
args = Seq2SeqTrainingArguments(output_dir=sys.argv[1] + "/out", use_cpu=True, report_to="none",
                                deepspeed=deepspeed_config(spec.deepspeed))  # zero.Init: from_pretrained loads partitioned
model, _ = hf.load_model(spec)
saved = load_file(sys.argv[1] + "/model.safetensors")
with deepspeed.zero.GatheredParameters([model.lm_head.weight, model.shared.weight]):
    print(json.dumps({"tied": model.lm_head.weight is model.shared.weight, "count": hf._param_count(model),
                      "head_equal": torch.equal(model.lm_head.weight, saved["lm_head.weight"]),
                      "shared_equal": torch.equal(model.shared.weight, saved["shared.weight"])}))
"""


@pytest.mark.integration
def test_zero3_keeps_an_untied_lm_head_untied(mount, tmp_path):
    """flan-t5 checkpoints have their own LM head; under ZeRO-3 transformers 5.x tied it to the
    embedding (empty partitions compare equal) and dropped its weights."""
    import torch

    from workflow import demo

    untied = tmp_path / "untied-t5"
    model = demo.make_model(300)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * 0.1)
    model.config.tie_word_embeddings = False  # as in flan-t5's config.json
    model.save_pretrained(str(untied))
    expected = sum(p.numel() for p in model.parameters())
    assert expected == demo.make_model(300).num_parameters() + model.shared.weight.numel()
    done = subprocess.run([sys.executable, "-c", ZERO3_LOAD, str(untied), str(29500 + os.getpid() % 500)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"tied": False, "count": expected, "head_equal": True, "shared_equal": True}, found
