"""A point named by its full name on the command line (``seed=2``: no override), and a point
that a command-line override adds to a recorded sweep, shown with its own index and name."""

from __future__ import annotations

import re

import yaml

from helpers import ROOT, run_cli
from workflow.launch.driver import placed
from workflow.launch.manifest import Manifest, PointRecord
from workflow.launch.sweep import expand
from workflow.rundir import RunDir
from workflow.states import State


def recorded_sweep(tmp_path) -> str:
    """A sweep of two points recorded as completed, each with a log; nothing trained."""
    path = tmp_path / "bs.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "bs",
                                    "grid": {"train.seed": [1, 2]}}))
    sweep = placed(expand(path))
    manifest = Manifest(sweep.name, sweep.file)
    for p in sweep.points:
        rd = RunDir(manifest.path.parent / p.slug)
        rd.root.mkdir(parents=True)
        rd.log.write_text(f"log of {p.name}\n")
        manifest.points[p.hash] = PointRecord(p.index, p.name, p.hash, str(rd.root), state=State.COMPLETED)
    manifest.save()
    return str(path)


def test_a_point_is_named_by_its_full_name_and_an_added_point_is_distinct(env, tmp_path, monkeypatch):
    monkeypatch.setenv("WF_RUNS_DIR", env["WF_RUNS_DIR"])
    path = recorded_sweep(tmp_path)
    for args in (["bs", "seed=2"], ["bs", "--point", "seed=2"], ["bs", "1"]):
        result = run_cli("logs", *args, env=env)
        assert result.returncode == 0, result.stderr
        assert "log of seed=2" in result.stdout and "log of seed=1" not in result.stdout, result.stdout
    cancel = run_cli("cancel", "bs", "seed=2", env=env)
    assert cancel.returncode == 0, cancel.stderr
    predict = run_cli("predict", "bs", "seed=2", "--data", "demo.json", env=env)
    assert predict.returncode != 0 and "Point seed=2 of sweep bs has not started" in predict.stderr, predict.stderr
    dry = run_cli("sweep", path, "train.max_steps=7", "--dry_run", "--allow_dirty", env=env)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"\b2\W+seed=1,train\.max_steps=7", dry.stdout), dry.stdout
    assert re.search(r"\b3\W+seed=2,train\.max_steps=7", dry.stdout), dry.stdout
