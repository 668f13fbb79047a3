"""The layout of one point's run directory, shared by the launcher and the node.

    job.json            what the node runs: resolved spec + context (plain data)
    spec.yaml           the resolved spec, for people
    log.txt             stdout and stderr of every task of the point
    state.json          written by the node: state, times, step, error summary
    metrics.jsonl       every metric and param logged (the tracking spool)
    checkpoints/        HF Trainer checkpoints (checkpoint-<step>/)
    eval_results.json   final metrics
    predictions.json    generations on the eval split
    model/              final model and tokenizer
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def job(self) -> Path:
        return self.root / "job.json"

    @property
    def spec_yaml(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def eval_results(self) -> Path:
        return self.root / "eval_results.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.json"

    @property
    def model(self) -> Path:
        return self.root / "model"

    def read_job(self) -> dict:
        return json.loads(self.job.read_text())

    def read_state(self) -> dict:
        return read_json(self.state)

    def write_state(self, **fields: Any) -> None:
        state = self.read_state()
        state.update(fields, updated_at=time.time())
        write_json(self.state, state)

    def read_results(self) -> dict:
        return read_json(self.eval_results)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
