"""The classifier's metrics on known values."""

from __future__ import annotations

import pytest

from workflow import metrics


def test_roc_auc_and_pearson_on_known_values():
    assert metrics.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert metrics.roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert metrics.roc_auc([0.2, 0.3], [0.5, 1]) is None
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_threshold_fallback_and_default_label():
    scores = {"a": 0.6, "b": 0.4, "c": 0.1}
    assert metrics.predict_labels(scores, [0.9, 0.5], None) == ["a"]
    assert metrics.predict_labels(scores, [0.9, 0.3], None) == ["a", "b"]
    assert metrics.predict_labels(scores, [0.9, 0.8], "c") == ["c"]
    assert metrics.predict_labels(scores, [0.9], None) == []


def test_multilabel_metrics_by_hand():
    out = metrics.multilabel_metrics([{"a": 0.9, "b": 0.8, "c": 0.1}, {"a": 0.2, "b": 0.1, "c": 0.7}],
                                     [["a"], ["c", "b"]], k=2, thresholds=[0.5], default=None)
    assert out["precision_at_2"] == pytest.approx(0.5) and out["recall_at_2"] == pytest.approx(0.75)
    assert out["exact_set_accuracy"] == 0.0
