"""The tiers follow the folders, and the fast tier's check sees a job that started."""

from __future__ import annotations

import json

from helpers import ROOT, tier_of, training_traces


def test_each_folder_is_a_tier_and_a_file_outside_them_is_none():
    assert tier_of(ROOT / "tests/unit/test_spec.py") == "unit"
    assert tier_of(ROOT / "tests/cli/test_cli.py") == "cli"
    assert tier_of(ROOT / "tests/integration/test_reliability.py") == "integration"
    assert tier_of(ROOT / "tests/gpu/test_gpu.py") == "gpu"
    assert tier_of(ROOT / "tests/test_somewhere.py") is None and tier_of(ROOT / "tests/golden/x.py") is None


def test_a_started_job_leaves_a_trace_and_a_refused_one_none(tmp_path):
    point = tmp_path / "runs/sweep/point-0001"
    point.mkdir(parents=True)
    (point / "job.json").write_text("{}")  # what the launcher writes before a job starts
    assert training_traces(tmp_path) == [] and training_traces(tmp_path / "absent") == []
    (tmp_path / "runs/.cache").mkdir()
    (tmp_path / "runs/.cache/state.json").write_text("{}")  # a saved dataset's, not a point's
    assert training_traces(tmp_path) == []
    (point / "state.json").write_text(json.dumps({"state": "RUNNING"}))  # the node, as the job starts
    assert training_traces(tmp_path) == [point / "state.json"]
