"""Evaluation metrics, as plain functions of lists (no torch): classifier scores, multi-label
ranking, and seq2seq generation metrics (sacrebleu, rouge-score)."""

from __future__ import annotations

import math

EPS = 1e-7
# The metric a sweep is ranked by: the first of these a run has (prefix match for "_at_k" names).
PRIMARY = ("exact_match", "roc_auc", "f1_at_", "accuracy", "pearson", "bleu", "rouge_l", "best_eval_loss", "eval_loss")


def lower_is_better(name: str) -> bool:
    return any(part in name for part in ("loss", "bce", "mse"))


def primary_metric(names) -> str | None:
    names = list(names)
    for want in PRIMARY:
        for name in names:
            if name == want or (want.endswith("_") and name.startswith(want)):
                return name
    return None


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


def multilabel_metrics(all_scores: list[dict[str, float]], gold: list[list[str]], k: int,
                       thresholds: list[float], default: str | None) -> dict:
    precision = recall = exact = 0.0
    for scores, labels in zip(all_scores, gold):
        top = sorted(scores, key=lambda label: -scores[label])[:k]
        hits = len(set(top) & set(labels))
        precision += hits / k
        recall += hits / len(labels) if labels else float(not top)
        exact += set(predict_labels(scores, thresholds, default)) == set(labels)
    n = len(gold)
    p, r = precision / n, recall / n
    return {f"precision_at_{k}": p, f"recall_at_{k}": r, f"f1_at_{k}": 2 * p * r / (p + r) if p + r else 0.0,
            "exact_set_accuracy": exact / n}


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
