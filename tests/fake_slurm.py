"""SLURM commands faked at the subprocess boundary: scripts on PATH that log each call and print
canned output, as submitit's tests do; the ``fake_slurm`` fixture puts them first on PATH."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from helpers import ROOT


def fake_bin(folder: Path, name: str, output: str, code: int = 0) -> None:
    """A stand-in SLURM command that logs its call and prints canned output."""
    path = folder / name
    path.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {folder}/calls.log\ncat <<'OUT'\n{output}\nOUT\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def fake_slurm_bin(tmp_path: Path) -> Path:
    """Stand-ins for scontrol and sinfo: a cluster with MaxArraySize 4 and two partitions."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake_bin(folder, "scontrol", "MaxArraySize            = 4\nMaxJobCount = 100")
    fake_bin(folder, "sinfo", "debug*|gpu:4\nbig|gpu:a100:8(S:0-1)")
    return folder


def calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def sweep_of(tmp_path, n: int, **spec) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), **spec}))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "name": "unit", "grid": {"train.seed": list(range(n))}}))
    return path
