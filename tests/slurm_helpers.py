"""Helpers for tests against the real SLURM test clusters that scripts/slurm-cluster.sh starts:
the single-node one (``start``) and the 2-node one (``start --nodes 2``).

The suite talks to a cluster only through that cluster's own SLURM_CONF, and only after it has
identified the cluster as the script's: every daemon in the script's pid files is alive, and the
controller that answers on the config's port reports the config's ClusterName. Any other SLURM
on the machine (found by ``sinfo`` through /etc/slurm or the caller's SLURM_CONF) is never used.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, run_cli

SCRIPT = ROOT / "scripts/slurm-cluster.sh"
CI = bool(os.environ.get("CI"))


@dataclass(frozen=True)
class TestCluster:
    nodes: int
    conf: Path

    __test__ = False  # not a test class

    @property
    def name(self) -> str:
        return re.search(r"^ClusterName=(\S+)", self.conf.read_text(), re.M).group(1)

    @property
    def env(self) -> dict:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        """A SLURM command against this cluster."""
        return subprocess.run(list(argv), env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=kwargs.pop("timeout", 60), **kwargs)

    def problem(self) -> str | None:
        """Why this is not (now) the script's running cluster; None when it is."""
        status = subprocess.run(["bash", str(SCRIPT), "status", "--nodes", str(self.nodes)], capture_output=True,
                                text=True, timeout=60)
        if status.returncode != 0:
            return f"the script's {self.nodes}-node cluster is not running ({self.start_hint})"
        config = self.run("scontrol", "show", "config")
        found = re.search(r"^ClusterName\s*=\s*(\S+)", config.stdout, re.M)
        if config.returncode != 0 or not found or found.group(1) != self.name:
            return (f"the controller on {self.conf} is not the script's cluster {self.name!r} "
                    f"(got {found.group(1) if found else config.stderr.strip()[:200]!r})")
        return None

    @property
    def start_hint(self) -> str:
        return "bash scripts/slurm-cluster.sh start" + (f" --nodes {self.nodes}" if self.nodes > 1 else "")


@functools.cache
def test_cluster(nodes: int = 1) -> TestCluster:
    """Where the script keeps the config of its ``nodes``-node cluster (`slurm-cluster.sh env`)."""
    out = subprocess.run(["bash", str(SCRIPT), "env", "--nodes", str(nodes)], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return TestCluster(nodes, Path(out.strip().split("=", 1)[1]))


test_cluster.__test__ = False


def require_slurm(nodes: int = 1) -> TestCluster:
    """The script's cluster, or skip with the reason (in CI, where .ci/run starts it, fail)."""
    cluster = test_cluster(nodes)
    problem = cluster.problem()
    if problem:
        if CI:
            pytest.fail(f"{problem}; .ci/run must start it")
        pytest.skip(problem)
    return cluster


def ensure_default_config(nodes: int = 1) -> None:
    """Tests assume the script's default MaxArraySize; restart if an interrupted test changed it."""
    config = test_cluster(nodes).run("scontrol", "show", "config").stdout
    if not re.search(r"^MaxArraySize\s*=\s*1001$", config, re.M):
        restart_cluster(nodes)


def manifest(runs: Path, sweep: str) -> dict:
    return json.loads((runs / sweep / "manifest.json").read_text())


def wait_states(runs: Path, sweep: str, done: set[str], env: dict, timeout: float = 400) -> dict:
    """Poll `launch.py status` until every point is in one of `done`; returns the manifest."""
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


def restart_cluster(nodes: int = 1, **env: str) -> None:
    nodes_arg = ["--nodes", str(nodes)]
    subprocess.run(["bash", str(SCRIPT), "stop", *nodes_arg], check=True, capture_output=True, timeout=120)
    subprocess.run(["bash", str(SCRIPT), "start", *nodes_arg], check=True, capture_output=True, timeout=180,
                   env={**os.environ, **env})
