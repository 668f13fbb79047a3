"""Classifier input the command line refuses: bad data, an unknown metric, and an unknown flag on
the original command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, run_cli, write_file

CLF = {"base": str(ROOT / "jobs/classifier.yaml")}


def data_file(mount: Path, name: str, payload: dict) -> str:
    (mount / "data" / name).write_text(json.dumps(payload))
    return name


@pytest.mark.parametrize("records, labels, needle", [
    ([{"input": "a", "target": 1.5}], None, "train[1].target: expected a number in [0, 1], got 1.5"),
    ([{"input": "a", "target": "high"}], None, "train[1].target: expected a number in [0, 1], got 'high'"),
    ([{"input": 7, "target": 1}], None, "train[1].input: expected a string, got 7"),
    ([{"input": "a", "labels": ["warm", "hot"]}], ["warm", "cool"], "train[1].labels: expected labels from the label set"),
])
def test_bad_classifier_data(records, labels, needle, env, tmp_path, own_mount):
    env = {**env, "WF_MOUNT_DIR": str(own_mount)}
    good = {"input": "a", "labels": ["warm"]} if labels else {"input": "a", "target": 0}
    payload = {"train": [good] + records, "eval": [good]}
    if labels:
        payload["labels"] = labels
    name = data_file(own_mount, "bad.json", payload)
    result = run_cli("run", write_file(tmp_path, "c.yaml", {**CLF, "data_name": name}), env=env)
    assert result.returncode != 0 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_metric_name(env, tmp_path):
    result = run_cli("run", "jobs/demo.yaml", "generate.metrics=[bleu, meteor]", env=env)
    assert result.returncode != 0 and "generate.metrics.1" in result.stderr and "'meteor'" in result.stderr


def test_unknown_flag_on_the_original_command_line_lists_the_flags(env):
    result = subprocess.run([sys.executable, "-m", "workflow.seq2seq", "--model_init_name", "tiny-t5",
                             "--learnin_rate", "1"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "unrecognized arguments: --learnin_rate" in result.stderr
    assert "--model_init_name" in result.stderr and "--training_run_name" in result.stderr
