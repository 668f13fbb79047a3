"""Evaluation metrics, as plain functions of lists (no torch): classifier scores, multi-label
ranking, and seq2seq generation metrics (sacrebleu, rouge-score)."""

from __future__ import annotations

import math
from dataclasses import dataclass

EPS = 1e-7


@dataclass(frozen=True)
class Metric:
    """One metric name and how the tool treats it. A name ending in ``_`` is a prefix
    (``f1_at_`` covers ``f1_at_3``); generation metrics also cover their ``_any_of_<n>`` form."""

    name: str
    lower_is_better: bool = False
    rank: int | None = None      # order when choosing the metric a sweep is ranked by (lowest first)
    final: bool = True           # a final metric, shown in results and compare tables
    live: bool = False           # shown by status as a point's latest metric while it trains
    generation: bool = False     # selectable in the spec's generate.metrics (seq2seq)
    at_eval: bool = False        # computed at every evaluation while training: train.best_metric may choose by it

    def matches(self, name: str, variants: bool = True) -> bool:
        if name == self.name or (self.name.endswith("_") and name.startswith(self.name)):
            return True
        return variants and self.generation and name.startswith(self.name + "_any_of_")


# The one metric registry: the spec, status, results and compare all read it.
METRICS = (
    Metric("exact_match", rank=0, live=True, generation=True),
    Metric("roc_auc", rank=1),
    Metric("f1_at_", rank=2),
    Metric("accuracy", rank=3),
    Metric("pearson", rank=4),
    Metric("bleu", rank=5, generation=True),
    Metric("rouge_l", rank=6, generation=True),
    Metric("best_eval_loss", lower_is_better=True, rank=7),
    Metric("eval_loss", lower_is_better=True, rank=8, final=False, live=True, at_eval=True),
    Metric("precision_at_"),
    Metric("recall_at_"),
    Metric("exact_set_accuracy"),
    Metric("bce", lower_is_better=True),
    Metric("mse", lower_is_better=True),
    Metric("loss", lower_is_better=True, final=False, live=True),
)
GENERATION = tuple(m.name for m in METRICS if m.generation)
LIVE = tuple(m.name for m in METRICS if m.live)
AT_EVAL = tuple(m.name for m in METRICS if m.at_eval)


def lookup(name: str) -> Metric | None:
    return next((m for m in METRICS if m.matches(name)), None)


def lower_is_better(name: str) -> bool:
    """From the registry; other names (train_loss, eval_bce, ...) by their loss-like part."""
    metric = lookup(name)
    return metric.lower_is_better if metric else any(part in name for part in ("loss", "bce", "mse"))


def primary_metric(names) -> str | None:
    """The metric a sweep is ranked by: the registry's lowest-ranked one among ``names``."""
    ranked = sorted((m for m in METRICS if m.rank is not None), key=lambda m: m.rank)
    names = list(names)
    return next((n for m in ranked for n in names if m.matches(n, variants=False)), None)


def table_metrics(names, key: str | None, limit: int = 6) -> list[str]:
    """The columns of a results table: the ranking metric first, then the final metrics present."""
    rest = [n for n in sorted(set(names)) if n != key and (m := lookup(n)) is not None and m.final]
    return ([key] if key else []) + rest[:limit - 1 if key else limit]


def rank(value, name: str | None) -> float:
    """Sort key, best first: missing values last."""
    if value is None or name is None:
        return float("inf")
    return value if lower_is_better(name) else -value


def best_first(metrics: dict, primary: str | None) -> tuple[float, float]:
    """Sort key of one point's final metrics, best first: the ranking metric, ties by lower eval loss."""
    return rank(metrics.get(primary), primary), rank(metrics.get("best_eval_loss"), "best_eval_loss")


def bce(scores: list[float], targets: list[float]) -> float:
    total = 0.0
    for p, t in zip(scores, targets):
        p = min(max(p, EPS), 1 - EPS)
        total -= t * math.log(p) + (1 - t) * math.log(1 - p)
    return total / len(scores)


def mse(scores: list[float], targets: list[float]) -> float:
    return sum((p - t) ** 2 for p, t in zip(scores, targets)) / len(scores)


def accuracy(scores: list[float], targets: list[float], threshold: float = 0.5) -> float:
    return sum((p >= threshold) == (t >= threshold) for p, t in zip(scores, targets)) / len(scores)


def roc_auc(scores: list[float], targets: list[float]) -> float | None:
    """Mann-Whitney AUC with tied ranks averaged; None unless targets are binary with both classes."""
    if not set(targets) <= {0, 1} or len(set(targets)) < 2:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    positives = sum(1 for t in targets if t == 1)
    negatives = len(targets) - positives
    rank_sum = sum(r for r, t in zip(ranks, targets) if t == 1)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy)


def classifier_metrics(scores: list[float], targets: list[float]) -> dict:
    out = {"bce": bce(scores, targets), "mse": mse(scores, targets), "accuracy": accuracy(scores, targets)}
    for name, value in (("roc_auc", roc_auc(scores, targets)), ("pearson", pearson(scores, targets))):
        if value is not None:
            out[name] = value
    return out


def predict_labels(scores: dict[str, float], thresholds: list[float], default: str | None) -> list[str]:
    """Try thresholds in descending order until at least one label passes; else the default label."""
    for threshold in sorted(thresholds, reverse=True):
        chosen = [label for label, p in scores.items() if p >= threshold]
        if chosen:
            return sorted(chosen, key=lambda label: -scores[label])
    return [default] if default else []


def ranking_metrics(ranked: list[list[str]], gold: list[list[str]], k: int) -> dict:
    """Precision, recall and F1 at K of ranked label lists against gold label sets."""
    precision = recall = 0.0
    for top, labels in zip(ranked, gold):
        hits = len(set(top[:k]) & set(labels))
        precision += hits / k
        recall += hits / len(labels) if labels else float(not top)
    n = len(gold)
    p, r = precision / n, recall / n
    return {f"precision_at_{k}": p, f"recall_at_{k}": r, f"f1_at_{k}": 2 * p * r / (p + r) if p + r else 0.0}


def label_set_metrics(ranked: list[list[str]], gold: list[list[str]], k: int) -> dict:
    """Generated label lists (best first): at K, and whether the K best are exactly the gold set."""
    exact = sum(set(top[:k]) == set(labels) for top, labels in zip(ranked, gold)) / len(gold)
    return {**ranking_metrics(ranked, gold, k), "exact_set_accuracy": exact}


def multilabel_metrics(all_scores: list[dict[str, float]], gold: list[list[str]], k: int,
                       thresholds: list[float], default: str | None) -> dict:
    ranked = [sorted(scores, key=lambda label: -scores[label]) for scores in all_scores]
    exact = sum(set(predict_labels(s, thresholds, default)) == set(g) for s, g in zip(all_scores, gold))
    return {**ranking_metrics(ranked, gold, k), "exact_set_accuracy": exact / len(gold)}


def generation_metrics(names: list[str], references: list[str], samples: list[list[str]]) -> dict:
    """First-sample metrics, plus any-of-n (best sample per example) when there are several samples."""
    n = len(samples[0]) if samples else 1
    out = {}
    for name in names:
        first, best = _METRICS[name](references, samples)
        out[name] = first
        if n > 1:
            out[f"{name}_any_of_{n}"] = best
    return out


def _exact(references: list[str], samples: list[list[str]]) -> tuple[float, float]:
    first = sum(s[0].strip() == r.strip() for r, s in zip(references, samples)) / len(references)
    best = sum(any(x.strip() == r.strip() for x in s) for r, s in zip(references, samples)) / len(references)
    return first, best


def _bleu(references: list[str], samples: list[list[str]]) -> tuple[float, float]:
    import sacrebleu

    first = sacrebleu.corpus_bleu([s[0] for s in samples], [references]).score
    chosen = [max(s, key=lambda x: sacrebleu.sentence_bleu(x, [r]).score) for r, s in zip(references, samples)]
    return first, sacrebleu.corpus_bleu(chosen, [references]).score


def _rouge_l(references: list[str], samples: list[list[str]]) -> tuple[float, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    first = best = 0.0
    for ref, outs in zip(references, samples):
        values = [scorer.score(ref, x)["rougeL"].fmeasure for x in outs]
        first += values[0]
        best += max(values)
    return first / len(references), best / len(references)


_METRICS = {"exact_match": _exact, "bleu": _bleu, "rouge_l": _rouge_l}
