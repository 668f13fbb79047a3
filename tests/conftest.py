"""Shared fixtures: an isolated mount/runs/MLflow tree per test session, the tiny model, the tiers
that follow from the folders, and the check that the fast tier trains nothing. The helpers that
are not fixtures live in helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_slurm import fake_slurm_bin
from helpers import FAST, ROOT, SHIPPED_HUB_IDS, TIERS, cli_env, copy_mount, hub_cache, tier_of, training_traces

TRAINER = "transformers.trainer"


def pytest_collection_modifyitems(config, items):
    misplaced = set()
    for item in items:
        tier = tier_of(Path(item.fspath))
        if tier is None:
            misplaced.add(str(item.fspath))
            continue
        for marker in TIERS[tier]:
            item.add_marker(marker)
        if tier in FAST and item.get_closest_marker("integration"):
            misplaced.add(f"{item.nodeid} (marked integration)")
    if misplaced:
        raise pytest.UsageError("tests belong in tests/unit, tests/cli, tests/integration or tests/gpu: "
                                + ", ".join(sorted(misplaced)))


@pytest.fixture(autouse=True)
def _fast_tier_trains_nothing(request, monkeypatch):
    """A unit or cli test that trains fails. In this process: the Trainer is never imported, or,
    if an earlier test imported it, its train() raises. In the CLI's subprocesses: no job started
    (a node writes state.json the moment a job starts) under the test's own folder."""
    if tier_of(Path(request.node.fspath)) not in FAST:
        yield
        return
    cli = tier_of(Path(request.node.fspath)) == "cli"
    folder = request.getfixturevalue("tmp_path") if cli and "tmp_path" in request.fixturenames else None
    loaded = TRAINER in sys.modules
    if loaded:
        monkeypatch.setattr(sys.modules[TRAINER].Trainer, "train", _no_training)
    yield
    if not loaded and TRAINER in sys.modules:
        pytest.fail(f"a fast-tier test imported {TRAINER}: training belongs in tests/integration")
    if folder is not None and training_traces(folder):
        pytest.fail(f"a cli test started a job ({training_traces(folder)[0]}): training belongs in "
                    "tests/integration")


def _no_training(*args, **kwargs):
    raise AssertionError("the fast tier (tests/unit, tests/cli) trains nothing: move this test to tests/integration")


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
    """A mount dir with the demo data and the tiny T5, built offline once per session. Tests only
    read it: a test that adds data or models uses ``own_mount``."""
    path = tmp_path_factory.mktemp("mount")
    env = {**os.environ, "WF_MOUNT_DIR": str(path), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "launch.py", "tiny_model"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    hub_cache(path / "hub", SHIPPED_HUB_IDS)
    return path


@pytest.fixture
def own_mount(tmp_path, mount) -> Path:
    """This test's own copy of the mount, to write data files and models into."""
    return copy_mount(mount, tmp_path)


@pytest.fixture
def env(tmp_path, mount) -> dict:
    """Environment for CLI subprocesses: isolated runs dir and MLflow store."""
    return cli_env(tmp_path, mount)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """Stand-in SLURM commands first on PATH (fake_slurm.py); returns their folder."""
    folder = fake_slurm_bin(tmp_path)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


@pytest.fixture
def isolated(monkeypatch, tmp_path, mount):
    """The same isolation for in-process library calls."""
    monkeypatch.setenv("WF_MOUNT_DIR", str(mount))
    monkeypatch.setenv("WF_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WF_MLFLOW_DIR", str(tmp_path / "mlflow"))
    monkeypatch.setenv("HF_HUB_CACHE", str(mount / "hub"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def queue():
    """SLURM's queue as a function, where a controller answers; else one that gives nothing (with
    no controller, nothing can be submitted to it, and squeue would wait for one)."""
    def ask() -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60).stdout

    if shutil.which("squeue") is None:
        return lambda: ""
    try:
        subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, timeout=10, check=True)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError):
        return lambda: ""
    return ask
