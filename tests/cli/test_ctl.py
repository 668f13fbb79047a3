"""The ctl backend through the command line: the rendered command's form, a clear error without
ctl, and a missing container."""

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
        "resources": {"gpus_per_node": 4, "gpu_type": "A100-80GB"},
        "ctl": {"container": "registry/t5:latest", "login": True, "high_priority": True,
                "shared_host_dir": "/mnt/shared"}}


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_dry_run_renders_the_original_form(spec, env, tmp_path):
    result = run_cli("run", str(spec), "--dry_run", env=env)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("ctl job run"))
    argv = shlex.split(line)
    assert argv[:5] == ["ctl", "job", "run", "--name", "job-0-" + argv[4].split("-")[-1]]
    assert argv[5:] [:2] == ["--container", "registry/t5:latest"]
    for flag in ("--login", "--high-priority"):
        assert flag in argv
    assert argv[argv.index("--shared-host-dir") + 1] == "/mnt/shared"
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
    path = tmp_path / "nocontainer.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "ctl": {}}))
    result = run_cli("run", str(path), "--dry_run", env=env)
    assert result.returncode != 0 and "ctl.container" in result.stderr
