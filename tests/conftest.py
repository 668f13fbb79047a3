"""Shared fixtures: an isolated mount/runs/MLflow tree per test session, the tiny model, and a
helper that runs the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _own_slurm_only():
    """Every SLURM command of the suite (the CLI's sbatch/sacct, the tests' squeue/scancel) goes to
    the script's single-node test cluster through its own SLURM_CONF, never to a cluster that
    /etc/slurm or the caller's SLURM_CONF names. Tests of the 2-node cluster switch to its config."""
    from slurm_helpers import test_cluster

    patch = pytest.MonkeyPatch()
    patch.setenv("SLURM_CONF", str(test_cluster(1).conf))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def mount(tmp_path_factory) -> Path:
    """A mount dir with the demo data and the tiny T5, built offline once per session."""
    path = tmp_path_factory.mktemp("mount")
    env = {**os.environ, "WF_MOUNT_DIR": str(path), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "launch.py", "tiny_model"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    hub_cache(path / "hub", SHIPPED_HUB_IDS)
    return path


SHIPPED_HUB_IDS = ("google/flan-t5-xxl", "google/flan-t5-xl")  # the shipped example specs' models


def hub_cache(folder: Path, hub_ids, config: str = "{}") -> Path:
    """A hub cache holding these hub ids as a download leaves them (refs/main names a snapshot),
    each with only its config: HF_HUB_OFFLINE=1 accepts a cached hub id, and the examples are
    planned (from presets), never trained."""
    for hub_id in hub_ids:
        model = folder / ("models--" + hub_id.replace("/", "--"))
        (model / "snapshots/0000").mkdir(parents=True, exist_ok=True)
        (model / "snapshots/0000/config.json").write_text(config)
        (model / "refs").mkdir(exist_ok=True)
        (model / "refs/main").write_text("0000")
    return folder


@pytest.fixture
def env(tmp_path, mount) -> dict:
    """Environment for CLI subprocesses: isolated runs dir and MLflow store."""
    return cli_env(tmp_path, mount)


def cli_env(root: Path, mount: Path) -> dict:
    """The CLI's environment with its runs and MLflow store under ``root``."""
    values = {**os.environ, "WF_MOUNT_DIR": str(mount), "WF_RUNS_DIR": str(root / "runs"),
              "WF_MLFLOW_DIR": str(root / "mlflow"), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(mount / "hub"),
              "COLUMNS": "200"}
    values.pop("MLFLOW_TRACKING_URI", None)
    return values


@pytest.fixture
def isolated(monkeypatch, tmp_path, mount):
    """The same isolation for in-process library calls."""
    monkeypatch.setenv("WF_MOUNT_DIR", str(mount))
    monkeypatch.setenv("WF_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WF_MLFLOW_DIR", str(tmp_path / "mlflow"))
    monkeypatch.setenv("HF_HUB_CACHE", str(mount / "hub"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def run_cli(*args: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
