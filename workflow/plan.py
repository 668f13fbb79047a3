"""The plan: a value that says exactly what a sweep will do, built before anything is touched.

``--dry_run`` prints a plan; ``submit`` consumes the same plan. Building one checks every
point's model source and data file, so bad input fails here, with nothing written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from workflow import data
from workflow.errors import Problem, SpecError
from workflow.manifest import sweep_dir
from workflow.paths import models_dir, resolve_tracking_uri
from workflow.rundir import RunDir
from workflow.sweep import Point, Sweep

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    backend: str
    tracking_uri: str
    experiment: str
    data_counts: dict

    @property
    def root(self) -> Path:
        return sweep_dir(self.sweep.name)

    def run_dir(self, point: Point) -> RunDir:
        return RunDir(self.root / point.slug)


def model_source(spec: dict) -> str:
    """Where ``from_pretrained`` loads the initial model from: a folder or a hub id."""
    if spec.get("model_init_name"):
        return str(models_dir() / spec["model_init_name"])
    return os.path.expanduser(spec["model_init_path"])


def check_model(spec: dict, file: str) -> Problem | None:
    source = model_source(spec)
    if spec.get("model_init_name"):
        if not (Path(source) / "config.json").is_file():
            available = sorted(p.name for p in models_dir().glob("*") if (p / "config.json").is_file())
            return Problem(file, "model_init_name", f"a model folder under {models_dir()}",
                           repr(spec["model_init_name"]),
                           "available: " + (", ".join(available) or "none (run: python launch.py tiny_model)"))
        return None
    looks_local = source.startswith(("/", ".", "~")) or Path(source).exists()
    if looks_local and not (Path(source) / "config.json").is_file():
        return Problem(file, "model_init_path", "a folder with config.json, or a hub id", repr(source))
    if not looks_local and not HUB_ID.match(source):
        return Problem(file, "model_init_path", "a local path or a hub id such as google/flan-t5-xxl", repr(source))
    return None


def make_plan(sweep: Sweep) -> Plan:
    """Check every point's model and data, and pin the tracking store."""
    problems: list[Problem] = []
    counts: dict = {}
    backends = {p.spec["backend"] for p in sweep.points}
    if len(backends) > 1:
        problems.append(Problem(sweep.file, "backend", "one backend for the whole sweep", ", ".join(sorted(backends))))
    for point in sweep.points:
        problem = check_model(point.spec, sweep.file)
        if problem and problem not in problems:
            problems.append(problem)
    if problems:
        raise SpecError(f"Cannot plan {sweep.file}", problems)
    for point in sweep.points:
        key = (point.spec["task"], point.spec["data_name"], point.spec["train"]["do_train"])
        if key not in counts:
            counts[key] = data.check(*key)
    first = sweep.points[0].spec
    uri = resolve_tracking_uri(first["tracking"]["uri"])
    return Plan(sweep, backends.pop(), uri, first["tracking"]["experiment"],
                {name: c for (_, name, _), c in counts.items()})
