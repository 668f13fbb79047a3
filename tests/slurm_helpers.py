"""Helpers for tests against the real single-node SLURM started by scripts/slurm-cluster.sh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts/slurm-cluster.sh"


def require_slurm() -> None:
    """Skip without a live cluster locally; in CI (CI=true) a missing cluster is a failure."""
    ok = shutil.which("sinfo") and subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    if not ok:
        if os.environ.get("CI"):
            pytest.fail("SLURM is not running; .ci/run must start it (scripts/slurm-cluster.sh start)")
        pytest.skip("no SLURM cluster running (bash scripts/slurm-cluster.sh start)")


def ensure_default_config() -> None:
    """Tests assume the script's default MaxArraySize; restart if an interrupted test changed it."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    if "MaxArraySize            = 1001" not in config and "MaxArraySize = 1001" not in config:
        restart_cluster()


def manifest(runs: Path, sweep: str) -> dict:
    return json.loads((runs / sweep / "manifest.json").read_text())


def wait_states(runs: Path, sweep: str, done: set[str], env: dict, timeout: float = 400) -> dict:
    """Poll `launch.py status` until every point is in one of `done`; returns the manifest."""
    from conftest import run_cli

    deadline = time.time() + timeout
    while time.time() < deadline:
        result = run_cli("status", sweep, env=env)
        assert result.returncode == 0, result.stderr
        states = {r["state"] for r in manifest(runs, sweep)["points"].values()}
        if states <= done:
            return manifest(runs, sweep)
        time.sleep(3)
    raise AssertionError(f"timed out; states {states}; status:\n{result.stdout}")


def wait_for(predicate, timeout: float = 300, every: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def restart_cluster(**env: str) -> None:
    subprocess.run(["bash", str(SCRIPT), "stop"], check=True, capture_output=True, timeout=120)
    subprocess.run(["bash", str(SCRIPT), "start"], check=True, capture_output=True, timeout=180,
                   env={**os.environ, **env})
