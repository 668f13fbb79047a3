"""End to end on the local backend: a 2-point sweep on the tiny T5 through the real CLI,
checked in the MLflow store with MLflow's own client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli

pytestmark = pytest.mark.integration


def test_two_point_sweep_trains_and_tracks(env, tmp_path):
    sweep = tmp_path / "two.yaml"
    sweep.write_text(yaml.safe_dump({
        "base": str(ROOT / "jobs/demo.yaml"), "name": "two",
        "overrides": {"train.max_steps": 40, "train.eval_steps": 20, "train.save_steps": 20,
                      "train.logging_steps": 10},
        "grid": {"train.learning_rate": [1e-3, 1e-2]}}))
    result = run_cli("sweep", str(sweep), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "results, best first" in result.stdout and "python launch.py ui --port 5000" in result.stdout

    manifest = json.loads((tmp_path / "runs/two/manifest.json").read_text())
    records = list(manifest["points"].values())
    assert [r["state"] for r in records] == ["COMPLETED", "COMPLETED"]
    for record in records:
        run_dir = Path(record["run_dir"])
        for name in ("spec.yaml", "log.txt", "eval_results.json", "predictions.json", "model/config.json"):
            assert (run_dir / name).is_file(), name
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-20", "checkpoint-40"]
        predictions = json.loads((run_dir / "predictions.json").read_text())
        assert {"prompt", "reference", "samples"} <= set(predictions[0])
        assert "step 40/40" in (run_dir / "log.txt").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("demo")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == manifest["parent_run_id"]]
    assert len(parents) == 1 and len(children) == 2 and parents[0].info.run_id == manifest["parent_run_id"]
    assert parents[0].info.status == "FINISHED"
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.run_id in {r["mlflow_run_id"] for r in records}
        for tag in ("sweep", "sweep_id", "point_hash", "point_index", "backend", "git_commit", "host"):
            assert child.data.tags.get(tag), tag
        assert child.data.params["train.learning_rate"] in ("0.001", "0.01")
        assert "version.torch" in child.data.params
        for metric in ("loss", "learning_rate", "eval_loss", "samples_per_second", "exact_match", "best_eval_loss"):
            assert metric in child.data.metrics, metric
        history = client.get_metric_history(child.info.run_id, "loss")
        assert [m.step for m in history] == [10, 20, 30, 40]
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"spec.yaml", "predictions.json", "eval_results.json"} <= artifacts

    rerun = run_cli("sweep", str(sweep), env=env)
    assert rerun.returncode == 0 and "skipped 2 point(s)" in rerun.stdout
    assert len(client.search_runs([experiment.experiment_id])) == 3, "a re-run must not create runs"


def test_usr2_preemption_of_a_local_job_resumes_into_the_same_run(env, tmp_path):
    from local_preemption import preempt_then_resume

    args = ("train.max_steps=600", "train.save_steps=5000", "train.eval_steps=5000", "train.logging_steps=20")
    p = preempt_then_resume(env, tmp_path / "runs", "jobs/demo.yaml", *args, at_step=60)
    assert p.first["state"] == "PREEMPTED" and "run the point again" in p.first["error"], p.first
    assert p.first_state["state"] == "PREEMPTED" and p.first_state["preemptions"] == 1
    assert p.second["state"] == "COMPLETED" and p.second["mlflow_run_id"] == p.first["mlflow_run_id"]
    assert "preemption requested at step" in p.log and "resuming from" in p.log
    saved = int(p.log.split("resuming from ")[1].split("checkpoint-")[1].split()[0])
    assert 60 <= saved < 600

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(p.second["mlflow_run_id"], "loss")]
    assert steps == list(range(20, 601, 20)), "the step count continues; no metric lost or repeated"
    run = client.get_run(p.second["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags.get("preemptions") == "1"
