"""An adaptive search on the local backend, end to end: trials that ask the study for their
parameters when they start, ASHA stopping bad ones at its rungs, and the study, the manifest
and MLflow agreeing trial by trial; the same command again submits nothing, a larger budget
extends the same study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli

pytestmark = pytest.mark.integration

SEARCH = {"space": {"train.learning_rate": {"loguniform": [1.0e-4, 1.0e-2]}, "train.warmup_steps": {"int": [0, 20]}},
          "sampler": "tpe", "trials": 6, "parallel": 2, "metric": "eval_loss", "seed": 3,
          "pruner": {"asha": {"min_steps": 10, "reduction": 3}}}


def write_sweep(tmp_path: Path, trials: int) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"),
                                                        "tracking": {"experiment": "search"}}))
    path = tmp_path / "lr-search.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "name": "lr-search",
                                    "overrides": {"train.max_steps": 60, "train.eval_steps": 10,
                                                  "train.save_steps": 10, "train.logging_steps": 10},
                                    "search": {**SEARCH, "trials": trials}}))
    return path


def test_a_search_prunes_and_the_study_manifest_and_mlflow_agree(tmp_path, env):
    import optuna
    from mlflow.tracking import MlflowClient

    from workflow.study import open_storage

    sweep = write_sweep(tmp_path, 6)
    dry = run_cli("sweep", str(sweep), "--dry_run", env=env)
    assert dry.returncode == 0 and "pruner asha: rungs at steps 10, 30" in dry.stdout, dry.stdout + dry.stderr
    assert "budget: at most 360 training steps" in dry.stdout
    result = run_cli("sweep", str(sweep), env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    sweep_dir = tmp_path / "runs/lr-search"
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    records = list(manifest["points"].values())
    assert len(records) == 6 and {r["state"] for r in records} == {"COMPLETED"}
    study = optuna.load_study(study_name="lr-search", storage=open_storage(str(sweep_dir / "study.journal")))
    trials = {t.number: t for t in study.trials}
    assert len(trials) == 6 and {t.state.name for t in trials.values()} <= {"COMPLETE", "PRUNED"}
    assert any(t.state.name == "PRUNED" for t in trials.values()), "ASHA stops at least one of six"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    for record in records:
        run_dir = Path(record["run_dir"])
        number = json.loads((run_dir / "trial.json").read_text())["number"]
        trial = trials[number]
        assert trial.user_attrs["slot"] == record["index"]
        spec = json.loads((run_dir / "job.json").read_text())["spec"]
        assert spec["train"]["learning_rate"] == trial.params["train.learning_rate"], "the run trained the trial's"
        assert spec["train"]["warmup_steps"] == trial.params["train.warmup_steps"]
        run = client.get_run(record["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["search.trial"] == str(number)
        assert float(run.data.params["train.learning_rate"]) == pytest.approx(trial.params["train.learning_rate"])
        assert run.data.tags["search.state"] == trial.state.name
        if trial.state.name == "PRUNED":
            stopped = int(run.data.tags["search.pruned_step"])
            assert stopped in (10, 30) and max(trial.intermediate_values) == stopped
            assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_loss")][-1] <= stopped + 1
        else:
            assert trial.value == pytest.approx(run.data.metrics["eval_loss"], rel=1e-6)
    params = {tuple(sorted(t.params.items())) for t in trials.values()}
    assert len(params) == 6, "each trial asked for its own parameters"

    parent = client.get_run(manifest["parent_run_id"]).data.tags
    best = study.best_trial
    assert parent["search.trials"] == "6" and parent["search.best_trial"] == str(best.number), parent
    assert float(parent["search.best_value"]) == pytest.approx(best.value, rel=1e-5)
    assert float(parent["search.best.train.learning_rate"]) == pytest.approx(best.params["train.learning_rate"])
    assert int(parent.get("search.PRUNED", 0)) + int(parent.get("search.COMPLETE", 0)) == 6
    status = run_cli("status", "lr-search", env={**env, "COLUMNS": "200"})
    assert status.returncode == 0 and "search: 6 trials:" in status.stdout + status.stderr
    again = run_cli("sweep", str(sweep), env=env)
    assert again.returncode == 0 and "skipped 6 point(s)" in again.stdout, again.stdout
    assert json.loads((sweep_dir / "manifest.json").read_text())["points"].keys() == manifest["points"].keys()

    more = run_cli("sweep", str(write_sweep(tmp_path, 8)), env=env, timeout=900)
    assert more.returncode == 0 and "skipped 6 point(s)" in more.stdout, more.stdout[-2000:] + more.stderr[-2000:]
    extended = json.loads((sweep_dir / "manifest.json").read_text())
    assert len(extended["points"]) == 8 and extended["parent_run_id"] == manifest["parent_run_id"]
    study = optuna.load_study(study_name="lr-search", storage=open_storage(str(sweep_dir / "study.journal")))
    assert len(study.trials) == 8, "the same study, two more trials"


def test_a_pruned_trial_stops_on_both_ranks_of_a_zero2_job(tmp_path, env):
    """Two CPU ranks (gloo), ZeRO-2. The grid puts a working learning rate first (seed 2) and a
    useless one second: ASHA stops the second trial at its first rung, on both ranks (the
    decision is a collective), and the job ends instead of hanging."""
    import optuna

    from workflow.study import open_storage

    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "base": str(ROOT / "jobs/demo.yaml"), "resources": {"tasks_per_node": 2},
        "deepspeed": {"enabled": True, "stage": 2},
        "train": {"max_steps": 40, "eval_steps": 10, "save_steps": 10, "logging_steps": 10, "warmup_steps": 0}}))
    sweep = tmp_path / "pair.yaml"
    sweep.write_text(yaml.safe_dump({"base": "base.yaml", "name": "pair", "search": {
        "space": {"train.learning_rate": {"choice": [3.0e-3, 1.0e-9]}}, "sampler": "grid", "seed": 2,
        "trials": 2, "parallel": 1, "pruner": {"asha": {"min_steps": 10, "reduction": 3}}}}))
    result = run_cli("sweep", str(sweep), env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    study = optuna.load_study(study_name="pair", storage=open_storage(str(tmp_path / "runs/pair/study.journal")))
    states = {t.params["train.learning_rate"]: t.state.name for t in study.trials}
    assert states == {3.0e-3: "COMPLETE", 1.0e-9: "PRUNED"}, states
    pruned = next(t for t in study.trials if t.state.name == "PRUNED")
    record = next(r for r in json.loads((tmp_path / "runs/pair/manifest.json").read_text())["points"].values()
                  if json.loads(Path(r["run_dir"], "trial.json").read_text())["number"] == pruned.number)
    log = Path(record["run_dir"], "log.txt").read_text()
    for rank in (0, 1):
        assert f"[rank {rank}] WARNING workflow.search: trial {pruned.number} pruned at step 10" in log, log[-3000:]
    assert record["state"] == "COMPLETED" and "world size 2" in log
