"""Where things live on disk. Every location is overridable by one environment variable.

- ``WF_MOUNT_DIR``: holds ``data/`` (JSON data files) and ``models/`` (model folders).
  Default: ``<project>/mount``. On a cluster point it at the shared filesystem.
- ``WF_RUNS_DIR``: sweep manifests and per-point run directories. Default ``<project>/runs``.
- ``WF_MLFLOW_DIR``: the default sqlite tracking store and its artifacts.
  Default ``<project>/.mlflow``.

A user's path (a spec's ``model_init_path`` or ``output_dir``, a command's file argument) is
relative to where the user ran the command. The launcher makes it absolute (``absolute``) before
a job is written: jobs run from their code snapshot's folder, never from the user's.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_PREFIXES = ("/", "./", "../", "~")  # a model value starting so is a local path, never a hub id
SQLITE = "sqlite:///"


def _env_path(name: str, default: Path) -> Path:
    return _resolved(os.environ.get(name), default)


@lru_cache(maxsize=64)
def _resolved(value: str | None, default: Path) -> Path:
    """Cached: a sweep of 10,000 points asks for the models folder for each."""
    return Path(value).expanduser().resolve() if value else default


def mount_dir() -> Path:
    return _env_path("WF_MOUNT_DIR", PROJECT_ROOT / "mount")


def data_dir() -> Path:
    return _mount_sub(os.environ.get("WF_MOUNT_DIR"), "data")


def models_dir() -> Path:
    return _mount_sub(os.environ.get("WF_MOUNT_DIR"), "models")


@lru_cache(maxsize=64)
def _mount_sub(_mount_env: str | None, name: str) -> Path:
    """Cached by the variable's value: a sweep of 10,000 points asks for the models folder for each."""
    return mount_dir() / name


def runs_dir() -> Path:
    return _env_path("WF_RUNS_DIR", PROJECT_ROOT / "runs")


def mlflow_dir() -> Path:
    return _env_path("WF_MLFLOW_DIR", PROJECT_ROOT / ".mlflow")


def default_tracking_uri() -> str:
    """An explicit sqlite store inside the project (never MLflow's implicit ./mlruns)."""
    return f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def default_artifact_root() -> str:
    return (mlflow_dir() / "artifacts").as_uri()


def is_local_path(value: str) -> bool:
    """A model value is a local path when it exists (relative to the working directory) or starts
    with ``/``, ``./``, ``../`` or ``~``; otherwise it is a hub id such as ``google/flan-t5-xl``."""
    return value.startswith(LOCAL_PREFIXES) or os.path.exists(value)


def absolute(value: str) -> str:
    """A user's path made absolute against this process's working directory (``~`` expanded): in
    the launcher, where the user ran the command."""
    return os.path.abspath(os.path.expanduser(value))


def resolve_tracking_uri(spec_uri: str | None) -> str:
    """The spec's value, else $MLFLOW_TRACKING_URI, else the project's sqlite store; a relative
    sqlite file is made absolute (the jobs and the launcher's helper run in other folders)."""
    uri = spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    relative = uri.startswith(SQLITE) and not uri[len(SQLITE):].startswith("/")
    return SQLITE + absolute(uri[len(SQLITE):]) if relative and uri != SQLITE else uri


def usable_tracking_uri(stored: str) -> str:
    """A URI persisted with its password masked is completed from $MLFLOW_TRACKING_URI."""
    return os.environ.get("MLFLOW_TRACKING_URI", stored) if "***" in stored else stored
