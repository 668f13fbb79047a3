"""The ctl backend's inner command really running on this machine (a stand-in ctl executes it, as
the cluster would), tracked in MLflow."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "backend": "ctl",
                                    "train": {"max_steps": 10, "eval_steps": 5, "save_steps": 5, "logging_steps": 5},
                                    "ctl": {"container": "registry/t5:latest", "login": True,
                                            "shared_host_dir": str(tmp_path)}}))
    return path


def test_inner_command_runs_as_is_and_is_tracked(spec, env, tmp_path):
    """A stand-in `ctl` records its arguments and runs --command here, as a cluster node would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ctl"
    fake.write_text("#!/usr/bin/env python3\nimport json, subprocess, sys\n"
                    f"open('{tmp_path}/ctl_args.json', 'w').write(json.dumps(sys.argv[1:]))\n"
                    "command = sys.argv[sys.argv.index('--command') + 1]\n"
                    "sys.exit(subprocess.run(command, shell=True).returncode)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    result = run_cli("run", str(spec), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    args = json.loads((tmp_path / "ctl_args.json").read_text())
    name = args[args.index("--name") + 1]
    manifest = json.loads((tmp_path / "runs/job/manifest.json").read_text())
    record = next(iter(manifest["points"].values()))
    assert record["job_id"] == name
    state = json.loads(Path(record["run_dir"], "state.json").read_text())
    assert state["state"] == "COMPLETED" and Path(record["run_dir"], "model/config.json").is_file()

    status = run_cli("status", "job", env=env)
    assert "COMPLETED" in status.stdout
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}").get_run(record["mlflow_run_id"])
    assert run.data.tags["point_hash"] == record["hash"] and run.info.status == "FINISHED"
    assert "loss" in run.data.metrics
