"""At 80 columns every table keeps each cell on one line: point names are elided in the middle
with their varying value kept, state words and figures are whole, and a long error is cut at a
word with an ellipsis."""

from __future__ import annotations

import yaml
from rich.console import Console

from tests.helpers import ROOT

from workflow.launch import console as ui
from workflow.launch.manifest import Manifest, PointRecord
from workflow.launch.table_fit import elide_name, shorten_text
from workflow.states import State

NAMES = ["mymax[resources.gpus_per_node=1]", "train_batch_size=8,train.seed=5",
         "flan-t5-xxl-long-sweep-name[train.learning_rate=3e-4,train.train_batch_size=64]", "mymax"]
ERROR = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity; "
         "75.12 GiB already allocated; 1.02 GiB free)")


def rendered(table) -> list[str]:
    screen = Console(width=80, record=True)
    screen.print(table)
    lines = screen.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    return lines


def status_rows(errors: bool) -> list[dict]:
    return [{"index": i, "name": NAMES[i % len(NAMES)], "state": state, "job_id": f"1234567_{i}",
             "elapsed_s": 3600 * i + 5, "step": 120 * i, "metric": "eval_loss=3.214",
             "error": ERROR if errors and state == State.FAILED else None} for i, state in enumerate(State)]


def test_a_name_is_elided_in_the_middle_and_keeps_its_varying_value():
    assert elide_name("mymax[resources.gpus_per_node=1]", 24) == "mymax[…gpus_per_node=1]"
    assert elide_name("mymax[resources.gpus_per_node=1]", 18) == "mymax[…per_node=1]"
    short = elide_name("train_batch_size=8,train.seed=5", 22)
    assert len(short) <= 22 and short.startswith("…") and short.endswith("size=8,train.seed=5")
    assert elide_name("mymax", 18) == "mymax"


def test_a_long_text_is_cut_at_a_word():
    short = shorten_text(ERROR, 30)
    assert short == "RuntimeError: CUDA out of…" and len(short) <= 30
    assert shorten_text("one\ntwo  three", 30) == "one two three"


def test_status_at_80_columns_keeps_states_whole_and_the_error_on_one_line():
    manifest = Manifest("mymax-bs", "mymax_bs.yaml")
    for errors in (False, True):
        lines = rendered(ui.status_table(manifest, status_rows(errors)))
        text = "\n".join(lines)
        for state in State:
            assert f" {state} " in text, state
        assert text.count("gpus_per_node=1]") >= 3 and "=1e-3" not in text
        assert "seed=5" in text and "train_batch_size=64]" in text
        if errors:
            error_line = next(line for line in lines if " FAILED " in line)
            assert "RuntimeError: CUDA out of" in error_line and "…" in error_line
            assert not [line for line in lines if "GiB" in line], "the error is one line, cut before it wraps"
        else:
            assert "1234567_3" in text, "the job id stays while the table fits without the step"


def test_a_large_sweeps_status_at_80_columns(isolated, monkeypatch):
    manifest = Manifest("wide", "wide.yaml")
    for i in range(100):
        manifest.points[f"{i:012x}"] = PointRecord(i, f"{NAMES[2]}-{i}", f"{i:012x}", str(isolated / f"p{i}"),
                                                   state=State.FAILED if i % 7 else State.RUNNING, error=ERROR)
    screen = Console(width=80, record=True)
    monkeypatch.setattr(ui, "console", screen)
    from workflow.launch import lifecycle

    ui.print_status(manifest, lifecycle.status_rows(manifest, lifecycle.shown_points(manifest)))
    lines = screen.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and any("FAILED" in line for line in lines)


def classifier_rows(n: int = 10) -> list[dict]:
    metrics = {"f1_at_3": 0.5123, "accuracy": 0.75, "bce": 0.3012, "mse": 0.1034, "precision_at_3": 0.4,
               "recall_at_3": 0.6, "exact_set_accuracy": 0.2, "best_eval_loss": 1.234}
    return [{"point": f"labels-sweep[train.learning_rate={i}e-4,train.train_batch_size=16]",
             "state": [State.COMPLETED, State.FAILED, State.OUT_OF_MEMORY][i % 3],
             "params": {"train.learning_rate": f"{i}e-4", "train.weight_decay": "0.01"}, "metrics": metrics}
            for i in range(1, n + 1)]


def test_the_classifier_results_table_at_80_columns():
    rows = classifier_rows()
    metrics = list(rows[0]["metrics"])
    text = "\n".join(rendered(ui.results_table(rows, ["train.learning_rate", "train.weight_decay"], metrics,
                                               "sweep labels: best first by f1_at_3", width=80)))
    for state in ("COMPLETED", "FAILED", "OUT_OF_MEMORY"):
        assert f" {state} " in text
    assert "COMPLET…" not in text and "f1_at_3" in text and "0.5123" in text
    for i in range(1, 11):
        assert f"learning_rate={i}e-4," in text or f"={i}e-4" in text, i


def test_evaluates_metrics_table_at_80_columns():
    values = {"exact_match": 0.5, "rouge_l": 0.61234, "a_metric_with_a_very_long_name_" * 3: 1.0}
    text = "\n".join(rendered(ui.metrics_table(values, "predictions.jsonl", width=80)))
    assert "exact_match" in text and "0.6123" in text and "_long_name_ │      1 │" in text


def test_a_finished_points_line_keeps_the_run_folder_whole(tmp_path):
    record = PointRecord(3, NAMES[2], "abc", str(tmp_path / ("run-" + "x" * 60)), state=State.OUT_OF_MEMORY)
    screen = Console(width=80, record=True)
    screen.print(ui.finished_line(record, 80), soft_wrap=True)  # as the progress bar prints it
    lines = screen.export_text().splitlines()
    assert lines[0].startswith("OUT_OF_MEMORY ") and lines[0].endswith("train_batch_size=64]")
    assert len(lines[0]) <= 80 and lines[1] == f"  {record.run_dir}", "the path is whole, to copy"


def test_the_dry_runs_points_table_at_80_columns(tmp_path):
    """Long grid names: the varying columns go first, then the names take several lines, each
    broken after a comma: every setting is shown whole."""
    from workflow.launch.sweep import expand

    grid = {"train.learning_rate": [3e-4, 1e-3], "train.train_batch_size": [16, 64],
            "generate.max_new_tokens": [32, 128], "train.warmup_steps": [0, 100]}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "long", "grid": grid}))
    sweep = expand(path)
    lines = rendered(ui.points_table(sweep))
    assert "learning_rate" not in lines[2], "\n".join(lines)  # the header: no varying columns
    cells = "".join(line.split("│")[2].strip() for line in lines[4:-1])
    assert cells == "".join(p.name for p in sweep.points), "\n".join(lines)
    short = ui.points_table(expand(ROOT / "sweeps/lr.yaml"))
    assert "learning_rate" in rendered(short)[2]  # short names leave room for the varying column
