"""The sweep lock: a second launch of a sweep being launched is refused."""

from __future__ import annotations

import yaml

from helpers import ROOT, run_cli
from workflow.launch import manifest as manifests


def test_concurrent_launch_of_the_same_sweep_is_refused(env, tmp_path, monkeypatch):
    monkeypatch.setenv("WF_RUNS_DIR", env["WF_RUNS_DIR"])
    path = tmp_path / "lock.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "grid": {"train.seed": [1]}}))
    with manifests.locked("lock"):
        result = run_cli("sweep", str(path), env=env)
    assert result.returncode != 0 and "is being launched by pid" in result.stderr, result.stderr
    assert not (tmp_path / "runs/lock/manifest.json").exists()
