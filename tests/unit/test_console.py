"""The console's pieces: elapsed times and the progress bar's label."""

from __future__ import annotations

import re


def test_elapsed_time_does_not_wrap_after_a_day():
    from workflow.launch.console import _elapsed

    assert _elapsed(3661) == "1:01:01"
    assert _elapsed(25 * 3600) == "1 day, 1:00:00"
    assert _elapsed(None) == "-"


def test_the_progress_bar_shows_step_loss_and_eta(tmp_path):
    import time

    from workflow.jsonio import append_jsonl, write_json
    from workflow.launch.console import RunningColumn
    from workflow.launch.manifest import PointRecord

    run_dir = tmp_path / "p"
    run_dir.mkdir()
    write_json(run_dir / "job.json", {"spec": {"train": {"max_steps": 300}}, "context": {}})
    record = PointRecord(0, "lr=1e-3", "abc", str(run_dir))
    column = RunningColumn()
    column.records[record.hash] = record
    assert str(column.render(None)) == "starting lr=1e-3"
    append_jsonl(run_dir / "metrics.jsonl", [{"kind": "metric", "key": "loss", "value": 3.2, "step": 10, "ts": 0}])
    assert str(column.render(None)) == "step 10/300 loss=3.2 lr=1e-3"
    column.first[record.hash] = (10, time.time() - 10)  # 10 steps took 10 s
    append_jsonl(run_dir / "metrics.jsonl", [{"kind": "metric", "key": "loss", "value": 2.5, "step": 20, "ts": 0}])
    text = str(column.render(None))
    assert re.fullmatch(r"step 20/300 loss=2\.5 ETA 0:04:(3\d|40) lr=1e-3", text), text
