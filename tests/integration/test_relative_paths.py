"""What was validated is what runs: relative paths mean the folder the command ran from, although
jobs run from their code snapshot (``runs/<sweep>/code/<digest>/``). The core workflow's
classifier command line names ``google/flan-t5-xl``; here that is a local folder beside the user,
offline with an empty hub cache, so a job that took it for a hub id would fail on its first line."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

pytestmark = pytest.mark.integration

# Copied from the seed README, as written; `python3 clf.py` is run as `python -m workflow.clf`.
CLF = ('python3 clf.py --model_pretrain_name "google/flan-t5-xl" --data_name 1226verifier_ft_all '
       '--max_steps 2001 --eval_steps 2000 --save_steps 2000')
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


@pytest.fixture
def user(tmp_path, mount, env) -> tuple[Path, dict]:
    """The user's folder (holding the model folder the command names) and the command's environment:
    a mount with the seed's data file, offline, and a hub cache without google/flan-t5-xl."""
    data = tmp_path / "orig-mount/data"
    shutil.copytree(mount / "data", data)
    clf = json.loads((mount / "data/clf.json").read_text())
    (data / "1226verifier_ft_all.json").write_text(json.dumps({s: clf[s] for s in ("train", "eval")}))
    folder = tmp_path / "user"
    shutil.copytree(mount / "models/tiny-t5", folder / "google/flan-t5-xl")
    return folder, {**env, "WF_MOUNT_DIR": str(tmp_path / "orig-mount"), "HF_HUB_OFFLINE": "1",
                    "HF_HUB_CACHE": str(tmp_path / "empty-hub"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run_clf(folder: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "workflow.clf", *shlex.split(CLF)[2:], *extra]
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=1500)


def the_point(runs: Path, sweep: str) -> Path:
    manifest = json.loads((runs / sweep / "manifest.json").read_text())
    (record,) = manifest["points"].values()
    return Path(record["run_dir"])


def test_the_seed_classifier_line_loads_the_local_folder_it_names(user, tmp_path):
    folder, env = user
    done = run_clf(folder, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = the_point(tmp_path / "runs", "classifier")
    spec = json.loads((run_dir / "job.json").read_text())["spec"]
    assert spec["model_init_path"] == str(folder / "google/flan-t5-xl")
    assert f"loaded {folder / 'google/flan-t5-xl'}" in (run_dir / "log.txt").read_text()
    assert (run_dir / "model/config.json").is_file()


def test_the_seed_classifier_line_runs_on_the_test_slurm_cluster(user, tmp_path):
    from slurm_helpers import require_slurm, wait_states

    require_slurm()
    folder, env = user
    (folder / "slurm.yaml").write_text(yaml.safe_dump({
        "backend": "slurm", "resources": {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 30}}))
    submitted = run_clf(folder, env, "--spec", "slurm.yaml")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    done = wait_states(tmp_path / "runs", "classifier", TERMINAL, env, timeout=1200)
    run_dir = the_point(tmp_path / "runs", "classifier")
    log = (run_dir / "log.txt").read_text()
    assert [r["state"] for r in done["points"].values()] == ["COMPLETED"], log[-3000:]
    assert f"loaded {folder / 'google/flan-t5-xl'}" in log


def test_a_relative_output_dir_lands_beside_the_user(env, tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    steps = ["train.max_steps=10", "train.eval_steps=10", "train.save_steps=10", "train.warmup_steps=0"]
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "run", str(ROOT / "jobs/demo.yaml"),
                           "output_dir=out/final", *steps], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (folder / "out/final/config.json").is_file()
    # Later commands, from elsewhere, find the model where the job put it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    predicted = subprocess.run([sys.executable, str(ROOT / "launch.py"), "predict", "demo", "--data", "demo.json",
                                "--out", "preds.json"], cwd=elsewhere, env=env, capture_output=True, text=True,
                               timeout=900)
    assert predicted.returncode == 0, predicted.stdout[-3000:] + predicted.stderr[-3000:]
    assert json.loads((elsewhere / "preds.json").read_text())[0]["samples"]
