"""`launch.py ui`: its help, and the `mlflow ui` it starts (a fake `mlflow` on PATH records its
command line) on 127.0.0.1 at the port asked for, with the project's store."""

from __future__ import annotations

import os

from helpers import cli_env, run_cli


def test_ui_help_names_its_flags(tmp_path, mount):
    result = run_cli("ui", "--help", env=cli_env(tmp_path, mount))
    assert result.returncode == 0 and "--port" in result.stdout and "--sweep" in result.stdout


def test_ui_starts_mlflow_ui_on_localhost_at_the_port(tmp_path, mount):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mlflow"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'argv'}\n")
    fake.chmod(0o755)
    env = cli_env(tmp_path, mount)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', os.environ['PATH'])}"
    result = run_cli("ui", "--port", "5123", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MLflow UI: http://127.0.0.1:5123" in result.stdout
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:2] == ["ui", "--backend-store-uri"] and argv[2].startswith("sqlite:///")
    assert argv[3:7] == ["--host", "127.0.0.1", "--port", "5123"]


def test_ui_of_an_unknown_sweep_starts_nothing(tmp_path, mount):
    result = run_cli("ui", "--sweep", "nosuch", env=cli_env(tmp_path, mount), timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "nosuch" in result.stderr
    assert not (tmp_path / "argv").exists()
