"""The ctl backend through the command line: the rendered command's form, a clear error without
ctl, and what it refuses before writing anything (no container, several nodes, run folders
outside the shared host dir)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli

SPEC = {"base": str(ROOT / "jobs/demo.yaml"), "backend": "ctl",
        "train": {"max_steps": 10, "eval_steps": 5, "save_steps": 5, "logging_steps": 5},
        "resources": {"gpus_per_node": 4, "gpu_type": "A100-80GB", "mem_gb": 64},
        "ctl": {"container": "registry/t5:latest", "login": True, "high_priority": True,
                "shared_host_dir": "/mnt/shared"}}


def write(tmp_path, **changes) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes, "ctl": {**SPEC["ctl"], "shared_host_dir": str(tmp_path),
                                                                **changes.get("ctl", {})}}))
    return path


@pytest.fixture
def spec(tmp_path) -> Path:
    return write(tmp_path)


def test_dry_run_renders_the_original_form(spec, env, tmp_path):
    result = run_cli("run", str(spec), "--dry_run", env=env)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("ctl job run"))
    argv = shlex.split(line)
    assert argv[:5] == ["ctl", "job", "run", "--name", "job-0-" + argv[4].split("-")[-1]]
    assert argv[5:] [:2] == ["--container", "registry/t5:latest"]
    for flag in ("--login", "--high-priority"):
        assert flag in argv
    assert argv[argv.index("--shared-host-dir") + 1] == str(tmp_path)
    assert argv[argv.index("--gpus-type") + 1] == "A100-80GB" and argv[argv.index("--gpu") + 1] == "4"
    inner = argv[argv.index("--command") + 1]
    # the inner command runs the original command line from the sweep's code snapshot
    assert re.match(rf'bash -c "cd {tmp_path}/runs/job/code/[0-9a-f]{{12}}; python3 -m workflow.seq2seq --job_file ',
                    inner), inner
    assert not (tmp_path / "runs").exists()


def test_missing_ctl_fails_clearly_and_submits_nothing(spec, env, tmp_path):
    env = {**env, "PATH": "/usr/bin:/bin"}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "ctl").exists())
    result = run_cli("run", str(spec), env={**env, "PATH": f"{Path(os.sys.executable).parent}:{env['PATH']}"})
    assert result.returncode != 0 and "ctl command is not on PATH" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow").exists()


def test_missing_container_is_a_spec_error(tmp_path, env):
    result = run_cli("run", str(write(tmp_path, ctl={"container": None})), "--dry_run", env=env)
    assert result.returncode != 0 and "ctl.container" in result.stderr


def test_several_nodes_are_refused_not_rendered_as_one(tmp_path, env):
    """ctl job run starts one container: 4 nodes x 8 GPUs would run on 8 GPUs."""
    path = write(tmp_path, resources={**SPEC["resources"], "nodes": 4, "gpus_per_node": 8})
    for extra in (["--dry_run"], []):
        result = run_cli("run", str(path), *extra, env=env)
        assert result.returncode != 0, result.stdout
        assert "resources.nodes" in result.stderr and "got 4" in result.stderr and "--backend slurm" in result.stderr
        assert "ctl job run" not in result.stdout and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow").exists()


def test_run_folders_outside_the_shared_host_dir_are_refused(tmp_path, env):
    result = run_cli("run", str(write(tmp_path, ctl={"shared_host_dir": "/mnt/elsewhere"})), "--dry_run", env=env)
    assert result.returncode != 0
    assert "ctl.shared_host_dir" in result.stderr and "/mnt/elsewhere" in result.stderr, result.stderr
    assert str(tmp_path / "runs" / "job") in result.stderr.replace("\n", "")
    assert not (tmp_path / "runs").exists()
