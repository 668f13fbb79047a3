"""Export: which checkpoint is consolidated."""

from __future__ import annotations


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
