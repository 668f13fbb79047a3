"""Classifier and multi-label tasks, seq2seq generation metrics, compare, and the original
command lines, on the real tiny T5."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT, run_cli, write_file

CLF = {"base": str(ROOT / "jobs/classifier.yaml")}


@pytest.mark.integration
def test_classifier_separable_task_reaches_auc(env, tmp_path):
    result = run_cli("run", "jobs/classifier.yaml", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = next((tmp_path / "runs/classifier").glob("classifier-*"))
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert results["roc_auc"] >= 0.95 and results["accuracy"] >= 0.9
    assert {"bce", "mse", "pearson"} <= set(results)
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert len(predictions) == 112 and 0 <= predictions[0]["score"] <= 1 and "target" in predictions[0]


# Spread measured on this machine kind (2 cores, 2 threads), jobs/multilabel.yaml, seeds 42, 1, 2, 3, 4:
#   200 steps: exact_set 1.00 0.50 0.64 0.98 0.82, f1_at_2 1.00 0.97 0.92 1.00 1.00 (0.705 / 0.929 in one fresh clone)
#   300 steps: exact_set 0.76 0.97 1.00 1.00 1.00, f1_at_2 0.98 1.00 1.00 1.00 1.00
#   600 steps: exact_set 0.88 0.88 (seeds 42, 1), f1_at_2 1.00 1.00
# The ranking (F1 at 2) converges; the exact set also depends on the calibration of the second
# label against the thresholds, which varies with the trajectory. So: the job's 300 steps, and
# bounds under the minimum over seeds with a margin (F1@2 0.98 -> 0.9, exact set 0.76 -> 0.6;
# a model that ranks at random scores about 0.5 and 0.1).
@pytest.mark.integration
def test_multilabel_top_k_and_exact_set(env, tmp_path):
    result = run_cli("run", "jobs/multilabel.yaml", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = next((tmp_path / "runs/multilabel").glob("multilabel-*"))
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert results["f1_at_2"] >= 0.9 and results["exact_set_accuracy"] >= 0.6, results
    first = json.loads((run_dir / "predictions.json").read_text())[0]
    assert set(first["scores"]) == {"warm", "cool", "pet", "wild"} and first["predicted"]


@pytest.mark.integration
def test_seq2seq_metrics_any_of_n_and_compare(env, tmp_path):
    sweep = write_file(tmp_path, "m.yaml", {
        "base": str(ROOT / "jobs/demo.yaml"), "name": "metrics",
        "overrides": {"train.max_steps": 150, "generate.metrics": ["exact_match", "bleu", "rouge_l"],
                      "generate.n_samples": 3, "generate.temperature": 0.7},
        "grid": {"train.learning_rate": [1e-4, 1e-2]}})
    result = run_cli("sweep", sweep, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for run_dir in (tmp_path / "runs/metrics").glob("learning_rate=*"):
        results = json.loads((run_dir / "eval_results.json").read_text())
        for name in ("exact_match", "bleu", "rouge_l"):
            assert results[f"{name}_any_of_3"] >= results[name]
        assert len(json.loads((run_dir / "predictions.json").read_text())[0]["samples"]) == 3
    table = run_cli("compare", "metrics", "--csv", str(tmp_path / "c.csv"), env=env)
    assert table.returncode == 0, table.stderr
    lines = [l for l in table.stdout.splitlines() if "learning_rate=" in l]
    assert "learning_rate=0.01" in lines[0] and "learning_rate=1e-4" in lines[1], table.stdout
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows[0].startswith("point,state,train.learning_rate,exact_match") and len(rows) == 3
    top = run_cli("compare", "metrics", "--metric", "best_eval_loss", "--top", "1", env=env)
    assert top.returncode == 0 and "learning_rate=0.01" in top.stdout and "1e-4" not in top.stdout

    # pictures: each point's eval plot, and compare --plot on the parent run, as PNG files and artifacts
    from mlflow.tracking import MlflowClient

    drawn = run_cli("compare", "metrics", "--plot", env=env)
    assert drawn.returncode == 0 and "compare_exact_match.png" in drawn.stdout, drawn.stderr
    png = tmp_path / "runs/metrics/compare_exact_match.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    manifest = json.loads((tmp_path / "runs/metrics/manifest.json").read_text())
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    assert [a.path for a in client.list_artifacts(manifest["parent_run_id"])] == ["compare_exact_match.png"]
    for record in manifest["points"].values():
        assert [a.path for a in client.list_artifacts(record["mlflow_run_id"], "plots")] == ["plots/seq2seq_scores.png"]
        assert Path(record["run_dir"], "plots/seq2seq_scores.png").stat().st_size > 10_000


@pytest.mark.integration
def test_original_command_lines_run_verbatim(env, tmp_path, own_mount):
    env = {**env, "WF_MOUNT_DIR": str(own_mount)}
    seq2seq = ("python -m workflow.seq2seq --model_init_name tiny-t5 --data_name demo.json "
               "--training_run_name orig-seq2seq --warmup_steps 10 --max_steps 30 --train_batch_size 16 "
               "--eval_batch_size 32 --gradient_accumulation_steps 2 --save_steps 15 --eval_steps 15 "
               "--temperature 0 --n_samples 1")
    done = subprocess.run(seq2seq.split(), cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (own_mount / "models/orig-seq2seq/config.json").is_file()
    again = subprocess.run(["python", "-m", "workflow.seq2seq", "--model_init_path", str(own_mount / "models/orig-seq2seq"),
                            "--data_name=demo.json", "--no_train", "--training_run_name", "orig-eval"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    clf = (f"python -m workflow.clf --model_pretrain_name {own_mount / 'models/tiny-t5'} --data_name clf.json "
           "--max_st 40 --eval_steps 20 --save_steps 20 --learning_rate 0.003 --training_run_name orig-clf")
    done = subprocess.run(clf.split(), cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (own_mount / "models/orig-clf/config.json").is_file()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    names = {r.info.run_name for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
    assert {"orig-seq2seq", "orig-eval", "orig-clf"} <= names
