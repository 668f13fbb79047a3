"""Idempotent launches: which points a run submits again, by hash and state, and retries."""

from __future__ import annotations

import pytest
import yaml

from helpers import ROOT
from workflow.errors import WorkflowError
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


def test_retry_by_cause_resubmits_only_the_points_that_failed_for_it(plan):
    found = manifest_with(plan, ["COMPLETED", "TIMEOUT", "FAILED", "FAILED", None])
    for record, cause in zip(list(found.points.values())[1:], ["timeout", "code", "oom_gpu"]):
        record.cause = cause
    chosen = select(plan, found, ("timeout", "oom_gpu"))  # fire's reading of --retry timeout,oom_gpu
    assert [p.index for p in chosen.submit] == [1, 3]
    assert chosen.skipped[plan.sweep.points[2].hash] == "FAILED (code: not retried by --retry)"


def test_unknown_retry_value(plan):
    with pytest.raises(WorkflowError, match="Unknown value for --retry"):
        select(plan, None, "everything")
    with pytest.raises(WorkflowError) as caught:
        select(plan, None, "nodefail")
    assert "did you mean 'node_fail'" in str(caught.value.problems[0])


def test_a_changed_spec_is_a_new_point(plan, tmp_path):
    other = make_plan(expand(tmp_path / "s.yaml", ["train.max_steps=7"]))
    chosen = select(other, manifest_with(plan, ["COMPLETED"] * 5), None)
    assert len(chosen.submit) == 5
