"""An adaptive search on the real SLURM test cluster: one array of trials, two at a time, each
asking the study when it starts; the study, the manifest and MLflow agree; a USR2 requeue
reattaches a trial to itself; a trial killed by scancel becomes FAIL at the next status."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli
from slurm_helpers import ensure_default_config, manifest, require_slurm, wait_for, wait_states

pytestmark = pytest.mark.integration

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()
    ensure_default_config()


def write(tmp_path: Path, name: str, trials: int, train: dict, **search) -> Path:
    (tmp_path / f"{name}-base.yaml").write_text(yaml.safe_dump({
        "base": str(ROOT / "jobs/demo.yaml"), "backend": "slurm", "tracking": {"experiment": name},
        "resources": {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 20},
        "train": {"eval_steps": 10, "save_steps": 10, "logging_steps": 10, "warmup_steps": 0, **train}}))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"base": f"{name}-base.yaml", "name": name, "search": {
        "space": {"train.learning_rate": {"loguniform": [1.0e-7, 1.0e-2]}}, "trials": trials, "parallel": 2,
        "seed": 1, "pruner": {"asha": {"min_steps": 10, "reduction": 2}}, **search}}))
    return path


def study(tmp_path: Path, name: str):
    import optuna

    from workflow.study import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(tmp_path / f"runs/{name}/study.journal")))


def trial_of(record: dict) -> int:
    return json.loads(Path(record["run_dir"], "trial.json").read_text())["number"]


def test_a_search_of_eight_trials_as_one_array(tmp_path, env):
    from mlflow.tracking import MlflowClient

    sweep = write(tmp_path, "s8", 8, {"max_steps": 30})
    dry = run_cli("sweep", str(sweep), "--dry_run", env=env)
    assert dry.returncode == 0 and "#SBATCH --array=0-7%2" in dry.stdout, dry.stdout + dry.stderr
    assert run_cli("sweep", str(sweep), env=env).returncode == 0
    done = wait_states(tmp_path / "runs", "s8", TERMINAL, env, timeout=600)
    records = list(done["points"].values())
    assert {r["state"] for r in records} == {"COMPLETED"} and len({r["job_id"].split("_")[0] for r in records}) == 1
    trials = {t.number: t for t in study(tmp_path, "s8").trials}
    assert len(trials) == 8 and {t.state.name for t in trials.values()} <= {"COMPLETE", "PRUNED"}
    assert any(t.state.name == "PRUNED" for t in trials.values())
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    for record in records:
        trial = trials[trial_of(record)]
        run = client.get_run(record["mlflow_run_id"])
        assert run.data.tags["search.state"] == trial.state.name
        assert float(run.data.params["train.learning_rate"]) == pytest.approx(trial.params["train.learning_rate"])
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(run.data.metrics["eval_loss"], rel=1e-6)


def test_a_requeued_trial_reattaches_to_itself(tmp_path, env):
    from mlflow.tracking import MlflowClient

    sweep = write(tmp_path, "again", 1, {"max_steps": 300, "eval_steps": 100, "save_steps": 5000,
                                         "logging_steps": 20}, parallel=1, pruner={"asha": {"min_steps": 100}})
    assert run_cli("sweep", str(sweep), env=env).returncode == 0
    record = next(iter(manifest(tmp_path / "runs", "again")["points"].values()))
    log = Path(record["run_dir"], "log.txt")
    wait_for(lambda: log.exists() and "step 120/300" in log.read_text(), timeout=300)
    subprocess.run(["scancel", "--signal=USR2", record["job_id"]], check=True)
    done = wait_states(tmp_path / "runs", "again", TERMINAL, env, timeout=500)
    (record,) = done["points"].values()
    text = log.read_text()
    assert record["state"] == "COMPLETED" and "again (resumed)" in text and "resuming from" in text, text[-3000:]
    (trial,) = study(tmp_path, "again").trials
    assert trial.state.name == "COMPLETE" and trial_of(record) == trial.number
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}").get_run(record["mlflow_run_id"])
    assert run.data.tags["preemptions"] == "1" and run.data.tags["search.trial"] == str(trial.number)
    assert sorted(trial.intermediate_values) == [100, 200, 300], "every evaluation reported, once"


def test_a_trial_killed_by_scancel_is_fail_after_status(tmp_path, env):
    sweep = write(tmp_path, "killed", 1, {"max_steps": 5000, "eval_steps": 10, "save_steps": 5000}, parallel=1)
    assert run_cli("sweep", str(sweep), env=env).returncode == 0
    record = next(iter(manifest(tmp_path / "runs", "killed")["points"].values()))
    wait_for(lambda: Path(record["run_dir"], "trial.json").exists(), timeout=300)
    wait_for(lambda: study(tmp_path, "killed").trials[0].intermediate_values, timeout=300)
    subprocess.run(["scancel", "--signal=KILL", record["job_id"]], check=True)  # nothing left to tell the study
    wait_states(tmp_path / "runs", "killed", TERMINAL, env, timeout=120)
    status = run_cli("status", "killed", env=env)
    assert status.returncode == 0 and "FAIL 1" in status.stdout + status.stderr, status.stdout + status.stderr
    assert study(tmp_path, "killed").trials[0].state.name == "FAIL"
