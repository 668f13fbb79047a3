"""Backends by name, imported on first use so the CLI loads only the one it needs."""

from __future__ import annotations

import importlib

from workflow.launch.backends.base import Backend
from workflow.launch.early import Started
from workflow.errors import BackendError, Problem, suggest

BACKENDS = {
    "local": "workflow.launch.backends.local:LocalBackend",
    "slurm": "workflow.launch.backends.slurm:SlurmBackend",
    "ctl": "workflow.launch.backends.ctl:CtlBackend",
}


def get(name: str, started: Started | None = None) -> Backend:
    """The backend ``name``; ``started``: the command's programs started early (``Backend``)."""
    if name not in BACKENDS:
        raise BackendError(f"Unknown backend '{name}'",
                           [Problem("<command line>", "backend", "one of " + ", ".join(BACKENDS), repr(name),
                                    suggest(name, BACKENDS))])
    module_name, cls_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)(started)
