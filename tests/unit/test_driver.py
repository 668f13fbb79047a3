"""Idempotent launches: which points a run submits again, by hash and state, and retries."""

from __future__ import annotations

import pytest
import yaml

from helpers import ROOT
from workflow.errors import SpecError
from workflow.launch.driver import select
from workflow.launch.manifest import Manifest, PointRecord
from workflow.launch.plan import make_plan
from workflow.launch.sweep import expand


@pytest.fixture
def plan(tmp_path, isolated):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "sel",
                                    "grid": {"train.seed": [1, 2, 3, 4, 5]}}))
    return make_plan(expand(path))


def manifest_with(plan, states: list[str | None]) -> Manifest:
    m = Manifest(sweep="sel", file="s.yaml")
    for point, state in zip(plan.sweep.points, states):
        if state:
            m.points[point.hash] = PointRecord(point.index, point.name, point.hash, "/x", state=state)
    return m


def test_rerun_skips_done_and_active_points(plan):
    chosen = select(plan, manifest_with(plan, ["COMPLETED", "RUNNING", "FAILED", "CANCELLED", None]), None)
    assert [p.index for p in chosen.submit] == [2, 3, 4]
    assert sorted(chosen.skipped.values()) == ["COMPLETED", "RUNNING"]


def test_retry_failed_resubmits_only_failed_cancelled_and_timed_out(plan):
    chosen = select(plan, manifest_with(plan, ["COMPLETED", "TIMEOUT", "FAILED", "CANCELLED", None]), "failed")
    assert [p.index for p in chosen.submit] == [1, 2, 3]


def test_unknown_retry_value(plan):
    with pytest.raises(SpecError, match="one of: failed"):
        select(plan, None, "everything")


def test_a_changed_spec_is_a_new_point(plan, tmp_path):
    other = make_plan(expand(tmp_path / "s.yaml", ["train.max_steps=7"]))
    chosen = select(other, manifest_with(plan, ["COMPLETED"] * 5), None)
    assert len(chosen.submit) == 5
