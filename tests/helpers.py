"""What the tests share besides fixtures: the project root, the CLI's environment, the CLI run as a
subprocess, a private copy of the session's mount, and the traces a training job leaves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# tests/<folder>/... -> the markers its tests carry; unit and cli together are the fast tier
TIERS = {"unit": ("unit",), "cli": ("cli",), "integration": ("integration",), "gpu": ("gpu", "integration")}
FAST = {"unit", "cli"}


def cli_env(root: Path, mount: Path) -> dict:
    """The CLI's environment with its runs and MLflow store under ``root``."""
    values = {**os.environ, "WF_MOUNT_DIR": str(mount), "WF_RUNS_DIR": str(root / "runs"),
              "WF_MLFLOW_DIR": str(root / "mlflow"), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(mount / "hub"),
              "COLUMNS": "200"}
    values.pop("MLFLOW_TRACKING_URI", None)
    return values


def run_cli(*args: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def write_file(folder: Path, name: str, data) -> str:
    """``data`` (text as is, anything else as YAML) in ``folder/name``; returns the path."""
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def copy_mount(mount: Path, folder: Path) -> Path:
    """A copy of the session's mount (demo data and the tiny T5, about 1 MB) that a test may add
    data files and models to without changing what any other test sees."""
    return Path(shutil.copytree(mount, folder / "mount", symlinks=True))


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the folder under tests/ that holds it (None: a file outside them)."""
    parts = path.resolve().parts[len((ROOT / "tests").parts):] if path.resolve().is_relative_to(ROOT / "tests") else ()
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def training_traces(folder: Path) -> list[Path]:
    """The state files that a node writes into a point's folder (beside its job.json) when the job
    starts; the launcher never writes one."""
    found = folder.rglob("state.json") if folder.is_dir() else ()
    return sorted(path for path in found if (path.parent / "job.json").is_file())


SHIPPED_HUB_IDS = ("google/flan-t5-xxl", "google/flan-t5-xl")  # the shipped example specs' models


def hub_cache(folder: Path, hub_ids, config: str = "{}") -> Path:
    """A hub cache holding these hub ids as a download leaves them (refs/main names a snapshot),
    each with only its config: HF_HUB_OFFLINE=1 accepts a cached hub id, and the examples are
    planned (from presets), never trained."""
    for hub_id in hub_ids:
        model = folder / ("models--" + hub_id.replace("/", "--"))
        (model / "snapshots/0000").mkdir(parents=True, exist_ok=True)
        (model / "snapshots/0000/config.json").write_text(config)
        (model / "refs").mkdir(exist_ok=True)
        (model / "refs/main").write_text("0000")
    return folder
