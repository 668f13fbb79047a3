"""The sweep's status index: jobs append their news (state, times, step, latest metric) to one
file beside the manifest, and `status` reads that file instead of every run directory."""

from __future__ import annotations

import os

import shutil
import time

from workflow.jsonio import read_lines_from
from workflow.launch import lifecycle
from workflow.launch.manifest import Manifest, PointRecord
from workflow.rundir import RunDir
from workflow.states import State


def sweep_of(isolated, n: int) -> Manifest:
    manifest = Manifest("idx", "idx.yaml")
    for i in range(n):
        run_dir = manifest.path.parent / f"p{i}-{i:08x}"
        run_dir.mkdir(parents=True)
        manifest.points[f"{i:012x}"] = PointRecord(i, f"p{i}", f"{i:012x}", str(run_dir), state=State.RUNNING,
                                                   backend="slurm", job_id=f"7_{i}")
    manifest.save()
    return manifest


def test_status_rows_come_from_the_index_alone(isolated):
    manifest = sweep_of(isolated, 3)
    rd = RunDir(manifest.path.parent / "p1-00000001")
    rd.write_state(state=State.RUNNING, started_at=time.time() - 60, mlflow_run_id="run-1", error=None)
    rd.post(step=20, metric="loss=3.25")
    RunDir(manifest.path.parent / "p2-00000002").write_state(state=State.FAILED, error="ValueError: x",
                                                              ended_at=time.time())
    assert lifecycle.apply_events(manifest)
    for record in manifest.points.values():
        shutil.rmtree(record.run_dir)  # status must not need them
    rows = {r["name"]: r for r in lifecycle.status_rows(manifest)}
    assert (rows["p1"]["step"], rows["p1"]["metric"]) == (20, "loss=3.25")
    assert 59 < rows["p1"]["elapsed_s"] < 120 and rows["p2"]["error"] == "ValueError: x"
    assert manifest.points["000000000001"].mlflow_run_id == "run-1"
    assert not lifecycle.apply_events(manifest), "each line is applied once"


def test_a_line_being_written_waits_for_the_next_read(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"dir": "a", "step": 1}\n{"dir": "a", "st')
    rows, offset = read_lines_from(path, 0)
    assert rows == [{"dir": "a", "step": 1}] and offset == len('{"dir": "a", "step": 1}\n')
    with path.open("a") as handle:
        handle.write('ep": 2}\n')
    assert read_lines_from(path, offset)[0] == [{"dir": "a", "step": 2}]


def test_a_large_sweep_shows_counts_and_the_rows_that_need_a_look(isolated):
    from workflow.launch import console

    manifest = sweep_of(isolated, 100)
    records = manifest.ordered()
    for record in records[:97]:
        record.state = State.COMPLETED
    records[97].state = State.FAILED
    shown = lifecycle.shown_points(manifest)
    assert [r.name for r in shown] == ["p97", "p98", "p99"], "rows are made only for what the table shows"
    with console.console.capture() as captured:
        console.print_status(manifest, lifecycle.status_rows(manifest, shown))
    text = captured.get()
    assert "100 points: COMPLETED 97, FAILED 1, RUNNING 2" in text
    assert "p97" in text and "p98" in text and "p99" in text and "p10 " not in text
    assert "python launch.py status idx --all" in text
    with console.console.capture() as captured:
        console.print_status(manifest, lifecycle.status_rows(manifest, lifecycle.shown_points(manifest, True)),
                             show_all=True)
    assert all(f"p{i} " in captured.get() for i in range(100))


def test_a_point_the_scheduler_lost_track_of_is_asked_again(isolated, tmp_path, monkeypatch):
    """Right after an outside scancel, squeue no longer lists a pending array and sacct may not
    have it yet: the point is UNKNOWN for that read, and the next status finds it CANCELLED."""
    import stat

    from workflow.launch import lifecycle

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def answer(squeue: str, sacct: str) -> None:
        for name, text in (("squeue", squeue), ("sacct", sacct)):
            (bin_dir / name).write_text(f"#!/bin/sh\ncat <<'OUT'\n{text}\nOUT\n")
            (bin_dir / name).chmod(0o755 | stat.S_IEXEC)

    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    manifest = sweep_of(isolated, 3)
    answer("", "")  # the accounting lag
    assert {r.state for r in lifecycle.refresh(manifest).points.values()} == {State.UNKNOWN}
    answer("", "7_[0-2%2]|CANCELLED by 0|00:00:00")
    assert {r.state for r in lifecycle.refresh(manifest).points.values()} == {State.CANCELLED}


def test_manifest_records_read_back_as_saved_and_bad_ones_are_a_clear_error(isolated):
    """Records are read without the dataclass's __init__ (status reads 10,000 of them): the same
    records, defaults for fields an older manifest lacks, and the same error for a bad record."""
    import json

    import pytest

    from workflow.errors import ManifestError
    from workflow.launch import manifest as manifests

    manifest = sweep_of(isolated, 3)
    manifest.points["000000000001"].extra["step"] = 5
    manifest.save()
    assert manifests.load("idx").points == manifest.points
    data = json.loads(manifest.path.read_text())
    old = data["points"]["000000000002"]
    for key in ("extra", "code", "commit"):  # a manifest from before these fields
        del old[key]
    del data["points"]["000000000000"]["extra"]
    manifest.path.write_text(json.dumps(data))
    points = manifests.load("idx").points
    record = points["000000000002"]
    assert (record.extra, record.code, record.state) == ({}, None, "RUNNING")
    assert record.extra is not points["000000000000"].extra, "each record gets its own default"
    for bad in ({**old, "colour": "red"}, {k: v for k, v in old.items() if k != "run_dir"}, ["not", "a", "record"]):
        data["points"]["000000000002"] = bad
        manifest.path.write_text(json.dumps(data))
        with pytest.raises(ManifestError, match="Corrupt manifest"):
            manifests.load("idx")


def test_status_of_a_sweep_it_cannot_write_still_shows_it(isolated, monkeypatch):
    """A sweep saved before polled.json existed, in a folder status may not write (a colleague's
    sweep, a read-only copy): status shows it, and writes nothing when nothing changed."""
    from workflow.launch import manifest as manifests

    manifest = sweep_of(isolated, 2)
    for record in manifest.points.values():
        record.state = State.COMPLETED
    manifest.save()
    (manifest.path.parent / manifests.POLLED_FILE).unlink()

    def refused(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Manifest, "save", refused)
    shown = lifecycle.refresh(manifests.load("idx"))
    assert shown.state_counts() == {"COMPLETED": 2}
