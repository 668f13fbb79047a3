"""``launch.py evaluate``: the metrics that follow from the references, matching by input text,
and clear errors."""

from __future__ import annotations

import json

import pytest

from workflow.errors import DataError
from workflow.launch.evaluate import evaluate_file


def write(path, payload):
    path.write_text(json.dumps(payload))
    return path


def test_text_references_from_a_data_file_matched_by_prompt(tmp_path):
    preds = write(tmp_path / "p.json", [{"prompt": "b", "samples": ["x", "y"]}, {"prompt": "a", "samples": ["no"]}])
    refs = write(tmp_path / "r.json", {"train": [], "eval": [{"prompt": "a", "completion": "yes"},
                                                            {"prompt": "b", "completion": "y"}]})
    assert evaluate_file(preds, refs, ["exact_match"])["exact_match"] == 0.0  # first samples: x, no
    both = write(tmp_path / "q.json", [{"prompt": "b", "samples": ["y", "x"]}, {"prompt": "a", "samples": ["yes"]}])
    assert evaluate_file(both, refs, ["exact_match"])["exact_match"] == 1.0


def test_label_list_references_rank_the_samples(tmp_path):
    preds = write(tmp_path / "p.json", [
        {"prompt": "q1", "samples": ["a > b", "c", "a > b", "d"], "labels": ["a > b", "c"]},
        {"prompt": "q2", "samples": ["x", "y"], "labels": ["y"]}])
    found = evaluate_file(preds, None, k=2)
    assert found["precision_at_2"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert found["recall_at_2"] == pytest.approx((1 + 1) / 2)
    assert found["exact_set_accuracy"] == pytest.approx(0.5)  # q1: {a > b, c} exactly; q2: {x, y} != {y}


def test_classifier_scores_against_targets(tmp_path):
    preds = write(tmp_path / "p.json", [{"input": "a", "score": 0.9}, {"input": "b", "score": 0.2}])
    refs = write(tmp_path / "r.json", [{"input": "b", "target": 0.0}, {"input": "a", "target": 1.0}])
    found = evaluate_file(preds, refs)
    assert found["accuracy"] == 1.0 and found["roc_auc"] == 1.0


def test_unmatched_or_missing_references_name_the_record(tmp_path):
    preds = write(tmp_path / "p.json", [{"prompt": "a", "samples": ["x"]}, {"prompt": "zz", "samples": ["y"]}])
    refs = write(tmp_path / "r.json", [{"prompt": "a", "completion": "x"}])
    with pytest.raises(DataError) as caught:
        evaluate_file(preds, refs)
    assert "[1].prompt" in str(caught.value) and "'zz'" in str(caught.value)
    with pytest.raises(DataError) as caught:
        evaluate_file(preds, None)
    assert "--references" in str(caught.value)
