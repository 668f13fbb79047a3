"""Idempotent launches: point selection by hash, retries, the sweep lock, and cluster refusals."""

from __future__ import annotations

import pytest
import yaml

from helpers import ROOT, run_cli
from workflow.launch import manifest as manifests
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
    with pytest.raises(Exception, match="one of: failed"):
        select(plan, None, "everything")


def test_a_changed_spec_is_a_new_point(plan, tmp_path):
    other = make_plan(expand(tmp_path / "s.yaml", ["train.max_steps=7"]))
    chosen = select(other, manifest_with(plan, ["COMPLETED"] * 5), None)
    assert len(chosen.submit) == 5


def test_concurrent_launch_of_the_same_sweep_is_refused(env, tmp_path, monkeypatch):
    monkeypatch.setenv("WF_RUNS_DIR", env["WF_RUNS_DIR"])
    path = tmp_path / "lock.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "grid": {"train.seed": [1]}}))
    with manifests.locked("lock"):
        result = run_cli("sweep", str(path), env=env)
    assert result.returncode != 0 and "is being launched by pid" in result.stderr, result.stderr
    assert not (tmp_path / "runs/lock/manifest.json").exists()


def test_elapsed_time_does_not_wrap_after_a_day():
    from workflow.launch.console import _elapsed

    assert _elapsed(3661) == "1:01:01"
    assert _elapsed(25 * 3600) == "1 day, 1:00:00"
    assert _elapsed(None) == "-"


def test_export_consolidates_the_newest_complete_checkpoint(tmp_path, monkeypatch):
    """A checkpoint cut off while being written (no .complete marker) is skipped, as in resume."""
    from workflow.jsonio import write_json
    from workflow.node import export
    from workflow.rundir import RunDir

    run_dir = tmp_path / "point"
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = run_dir / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{}")
        if complete:
            (folder / ".complete").write_text("{}")
    (run_dir / "model").mkdir()  # ZeRO-3 without consolidated weights: nothing but the checkpoints
    write_json(run_dir / "job.json", {"spec": {"model_init_name": "tiny-t5", "data_name": "demo.json"}})
    seen = []
    monkeypatch.setattr(export, "_consolidate_zero", lambda checkpoint, out, spec: seen.append(checkpoint.name))
    export.export(RunDir(run_dir), tmp_path / "out")
    assert seen == ["checkpoint-10"]


def test_states_are_typed_and_read_old_manifests():
    import json

    from workflow.states import State

    assert State.RUNNING.is_active and not State.RUNNING.is_terminal
    assert State.PREEMPTED.is_terminal and State.COMPLETED.is_terminal and not State.PLANNED.is_terminal
    record = PointRecord(0, "p", "h", "/tmp/p")
    assert json.loads(json.dumps({"state": record.state})) == {"state": "PLANNED"}  # files hold plain names
    assert State("FAILED") == "FAILED" and f"{State.FAILED:>8}" == "  FAILED"
