"""The files of one point's run directory, shared by the launcher and the node. Every path
into a run directory goes through ``RunDir``.

    job.json            what the node runs: resolved spec + context (plain data)
    spec.yaml           the resolved spec, for people (written by the job when it starts)
    log.txt             stdout and stderr of every task of the point
    state.json          written by the node: state, times, step, error summary
    metrics.jsonl       every metric and param logged (the tracking spool)
    ../events.jsonl     the sweep's status index: each point's state changes, step and latest metric
    tracking.json       the MLflow run id and how much of the spool it has received
    checkpoints/        HF Trainer checkpoints (checkpoint-<step>/, complete ones marked)
    eval_results.json   final metrics
    predictions.json    generations (or scores) on the eval split
    plots/              eval plots (PNG), also MLflow artifacts
    model/              final model and tokenizer
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow.jsonio import append_jsonl, read_json, write_json

# Written into a checkpoint folder once the Trainer has finished writing it: a checkpoint cut
# off by a kill or a full disk is never resumed from, nor exported.
COMPLETE_MARKER = ".complete"
EVENTS = "events.jsonl"
EVENT_FIELDS = ("state", "started_at", "ended_at", "error", "mlflow_run_id", "preemptions", "host", "cause", "where")


@dataclass(frozen=True)
class RunDir:
    root: Path

    job = property(lambda self: self.root / "job.json")
    spec_yaml = property(lambda self: self.root / "spec.yaml")
    log = property(lambda self: self.root / "log.txt")
    state = property(lambda self: self.root / "state.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    tracking = property(lambda self: self.root / "tracking.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    eval_results = property(lambda self: self.root / "eval_results.json")
    predictions = property(lambda self: self.root / "predictions.json")
    plots = property(lambda self: self.root / "plots")
    model = property(lambda self: self.root / "model")
    # The sweep's status index, beside its manifest: every point's news (state, times, step and
    # latest metric) appended as one line, so status reads one file, not every run directory.
    events = property(lambda self: self.root.parent / EVENTS)

    def read_job(self) -> dict:
        return read_json(self.job)

    def read_state(self) -> dict:
        return read_json(self.state)

    def write_state(self, **fields: Any) -> None:
        state = self.read_state()
        state.update(fields, updated_at=time.time())
        write_json(self.state, state)
        self.post(**{k: v for k, v in fields.items() if k in EVENT_FIELDS})

    def post(self, **fields: Any) -> None:
        """Append this point's news to the sweep's status index; a failure costs only the index
        (status then shows the scheduler's view)."""
        try:
            append_jsonl(self.events, [{"dir": self.root.name, "t": time.time(), **fields}])
        except OSError:
            pass

    def read_results(self) -> dict:
        return read_json(self.eval_results)

    def set_aside_checkpoints(self, label: str) -> Path | None:
        """Move the checkpoints out of the way of a restart (``checkpoints.<label>/``): a job that
        cannot load them starts over, and nothing written is lost."""
        if not self.checkpoints.is_dir():
            return None
        target = self.root / f"checkpoints.{label}"
        self.checkpoints.rename(target)
        return target

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint that was completely written; partial ones are skipped."""
        if not self.checkpoints.is_dir():
            return None
        found = []
        for folder in self.checkpoints.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
            if match and (folder / COMPLETE_MARKER).is_file() and (folder / "trainer_state.json").is_file():
                found.append((int(match.group(1)), folder))
        return str(max(found)[1]) if found else None
