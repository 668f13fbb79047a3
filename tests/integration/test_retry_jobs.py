"""Automatic retries, end to end on the local backend: a point that runs out of GPU memory (the
test seam raises torch's own OutOfMemoryError at a step, on the first attempt only) re-plans to
half the micro batch with twice the accumulation, resumes from its checkpoint into the same
MLflow run, and completes; the failure's tags go, the attempt and the change stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli

pytestmark = pytest.mark.integration


def test_an_out_of_gpu_memory_point_replans_resumes_and_completes(env, tmp_path):
    from mlflow.tracking import MlflowClient

    path = tmp_path / "oom.yaml"
    path.write_text(yaml.safe_dump({
        "base": str(ROOT / "jobs/demo.yaml"), "retry": {"on": ["oom_gpu"], "max": 1},
        "train": {"max_steps": 6, "train_batch_size": 8, "gradient_accumulation_steps": 1, "save_steps": 2,
                  "eval_steps": 6, "logging_steps": 1, "warmup_steps": 0}}))
    result = run_cli("run", str(path), env={**env, "WF_INJECT_FAULT": "oom_gpu@3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    said = result.stdout + result.stderr
    assert "oom_gpu, retry 1: train.train_batch_size 8 -> 4, train.gradient_accumulation_steps 1 -> 2" in said, said

    manifest = json.loads((tmp_path / "runs/oom/manifest.json").read_text())
    (record,) = manifest["points"].values()
    assert record["state"] == "COMPLETED" and record["attempt"] == 2 and record["cause"] is None
    assert record["extra"]["replanned"] == {"train.train_batch_size": 4, "train.gradient_accumulation_steps": 2}
    run_dir = Path(record["run_dir"])
    log = (run_dir / "log.txt").read_text()
    assert "OutOfMemoryError" in log and "checkpoint-2" in log.split("attempt 2", 1)[1], log[-3000:]
    ran = yaml.safe_load((run_dir / "spec.yaml").read_text())["train"]
    assert (ran["train_batch_size"], ran["gradient_accumulation_steps"]) == (4, 2)  # the same global batch, 8

    client = MlflowClient(manifest["tracking_uri"])
    run = client.get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["retry.attempt"] == "2" and "train.train_batch_size 8 -> 4" in run.data.tags["retry.change"]
    assert "failure.cause" not in run.data.tags and "error" not in run.data.tags
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "loss")})
    assert steps == [1, 2, 3, 4, 5, 6], steps  # one curve: the retry continued from step 2's checkpoint

    status = run_cli("status", "oom", env={**env, "COLUMNS": "80"})
    assert status.returncode == 0 and " try " in status.stdout, status.stdout


def test_a_point_without_a_retry_block_fails_once_and_is_named_by_its_cause(env, tmp_path):
    from mlflow.tracking import MlflowClient

    path = tmp_path / "once.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"),
                                    "train": {"max_steps": 4, "save_steps": 4, "eval_steps": 4, "logging_steps": 1}}))
    result = run_cli("run", str(path), env={**env, "WF_INJECT_FAULT": "nccl@2"})
    assert result.returncode != 0
    manifest = json.loads((tmp_path / "runs/once/manifest.json").read_text())
    (record,) = manifest["points"].values()
    assert record["state"] == "FAILED" and record["cause"] == "nccl" and record["attempt"] == 1
    assert record["where"].startswith("workflow/"), record["where"]
    run = MlflowClient(manifest["tracking_uri"]).get_run(record["mlflow_run_id"])
    assert run.data.tags["failure.cause"] == "nccl" and run.data.tags["failure.where"] == record["where"]
    parent = MlflowClient(manifest["tracking_uri"]).get_run(manifest["parent_run_id"])
    assert parent.data.tags.get("points.failed.nccl") == "1", parent.data.tags
    status = run_cli("status", "once", "--all", env={**env, "COLUMNS": "80"})
    assert "nccl" in status.stdout and "failed by cause: nccl 1" in status.stdout, status.stdout
    table = [line for line in status.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= 80, status.stdout  # the links stay whole
