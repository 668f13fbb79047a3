"""A planted bad flag on every command: the command is refused before it does anything.

fire calls a command and complains about the arguments it could not use afterwards, so a
misspelled flag used to train, write run folders and MLflow runs, or submit, and only then fail.
Each command here gets its real arguments plus a misspelling of one of its flags."""

from __future__ import annotations

import inspect
import subprocess

import pytest

from helpers import ROOT, run_cli

import launch

# command -> its arguments (real ones: without the planted flag, each would do its work)
ARGS = {
    "sweep": ["sweeps/lr.yaml", "train.max_steps=2"],
    "run": ["jobs/demo.yaml", "train.max_steps=2"],
    "validate": ["jobs/demo.yaml"],
    "plan": ["jobs/demo.yaml"],
    "status": ["demo"],
    "sync": ["demo"],
    "logs": ["demo"],
    "cancel": ["demo"],
    "list": [],
    "compare": ["demo"],
    "predict": ["demo", "--data", "demo.json"],
    "evaluate": ["demo.json"],
    "export": ["demo"],
    "tiny_model": ["--name", "planted"],
    "schema": [],
    "ui": ["--sweep", "demo"],
}


def commands() -> list[str]:
    return sorted(n for n, f in vars(launch.Commands).items() if not n.startswith("_") and callable(f))


def misspelled(command: str) -> tuple[str, str | None]:
    """A near miss of one of the command's flags (two letters swapped), and that flag."""
    params = inspect.signature(getattr(launch.Commands, command)).parameters
    flags = [n for n, p in params.items() if n != "self" and p.kind != p.VAR_POSITIONAL and len(n) >= 4]
    if not flags:
        return "--bogus", None
    flag = max(flags, key=len)
    i = next(i for i in range(1, len(flag) - 1) if flag[i] != flag[i + 1])
    return f"--{flag[:i]}{flag[i + 1]}{flag[i]}{flag[i + 2:]}", flag


def project_files() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True,
                          text=True).stdout


def test_every_command_is_covered():
    assert sorted(ARGS) == commands()


@pytest.mark.parametrize("command", commands())
def test_a_planted_bad_flag_creates_nothing(command, env, tmp_path, own_mount, queue):
    planted, flag = misspelled(command)
    env = {**env, "WF_MOUNT_DIR": str(own_mount)}
    mount_before, project_before, queue_before = sorted(own_mount.rglob("*")), project_files(), queue()
    result = run_cli(command, *ARGS[command], planted, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: Bad arguments to '{command}'; nothing was run"), result.stderr
    assert f"'{planted}'" in result.stderr and "Traceback" not in result.stderr
    if flag:
        assert f"did you mean '--{flag}'?" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow").exists()
    assert sorted(own_mount.rglob("*")) == mount_before, "nothing may be written into the mount"
    assert project_files() == project_before, "nothing may be written into the project"
    assert queue() == queue_before, "nothing may be submitted"


@pytest.mark.parametrize("value", ["exact_match,rouge_l", "exact_match rouge_l", "[exact_match, rouge_l]"])
def test_list_flags_read_every_form_alike(value, env, tmp_path):
    preds = tmp_path / "preds.json"
    preds.write_text('[{"prompt": "a", "completion": "b c", "samples": ["b c"]}]')
    result = run_cli("evaluate", str(preds), "--metrics", value, env=env)
    assert result.returncode == 0, result.stderr
    assert "exact_match" in result.stdout and "rouge_l" in result.stdout and "bleu" not in result.stdout


def test_help_after_arguments_shows_help_and_runs_nothing(env, tmp_path):
    result = run_cli("sweep", "sweeps/lr.yaml", "--backend", "slurm", "--help", env=env)
    assert result.returncode == 0 and "--dry_run" in result.stdout + result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args", [["--help"], [], ["sweep", "--help"], ["predict", "demo", "--help"], ["schema"]]
                         + [[c, "--help"] for c in ("evaluate", "export", "compare", "plan")])
def test_help_and_schema_fit_80_columns(args, env):
    result = run_cli(*args, env={**env, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) > 5 and max(len(line) for line in lines) <= 80, [l for l in lines if len(l) > 80]
