"""Eval plots, written as PNG files beside the results and logged to the run as MLflow artifacts
(the run page of the MLflow UI shows them). matplotlib with the Agg backend: no display needed.

- classifier: ROC and precision-recall curves, and a calibration plot;
- multi-label: each label's probability for a few eval examples, and the F1 of each label;
- seq2seq: the distribution of per-example similarity to the reference, and prompt length
  against it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

EXAMPLES = 4  # multi-label: eval examples drawn


def draw(task: str, predictions: list[dict], folder: Path) -> list[Path]:
    """The task's figures from its predictions.json records; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    if task == "seq2seq":
        return [_seq2seq(predictions, folder)]
    if predictions and "scores" in predictions[0]:
        return [_multilabel(predictions, folder)]
    return [_classifier(predictions, folder)]


def _figure(panels: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2), squeeze=False)
    return fig, axes[0]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _classifier(rows: list[dict], folder: Path) -> Path:
    scores = [r["score"] for r in rows]
    targets = [float(r["target"]) for r in rows]
    binary = [1 if t >= 0.5 else 0 for t in targets]
    fig, (roc, pr, cal) = _figure(3)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    positives, negatives = sum(binary), len(binary) - sum(binary)
    tp = fp = 0
    fpr, tpr, precision, recall = [0.0], [0.0], [], []
    for i in order:
        tp, fp = tp + binary[i], fp + 1 - binary[i]
        fpr.append(fp / max(negatives, 1))
        tpr.append(tp / max(positives, 1))
        precision.append(tp / (tp + fp))
        recall.append(tp / max(positives, 1))
    roc.plot(fpr, tpr, color="tab:blue")
    roc.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    roc.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    pr.plot(recall, precision, color="tab:green")
    pr.set(title="precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    bins = [[] for _ in range(10)]
    for score, target in zip(scores, targets):
        bins[min(int(score * 10), 9)].append((score, target))
    filled = [b for b in bins if b]
    cal.plot([sum(s for s, _ in b) / len(b) for b in filled], [sum(t for _, t in b) / len(b) for b in filled],
             marker="o", color="tab:orange")
    cal.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    cal.set(title="calibration (10 bins)", xlabel="mean p(yes)", ylabel="mean target", xlim=(0, 1), ylim=(0, 1))
    return _save(fig, folder / "classifier_curves.png")


def _multilabel(rows: list[dict], folder: Path) -> Path:
    labels = list(rows[0]["scores"])
    fig, (probs, f1) = _figure(2)
    width = 0.8 / min(EXAMPLES, len(rows))
    for j, row in enumerate(rows[:EXAMPLES]):
        xs = [i + j * width for i in range(len(labels))]
        gold = set(row["labels"])
        probs.bar(xs, [row["scores"][label] for label in labels], width=width,
                  label=f"{row['input'][:24]} ({', '.join(sorted(gold))})")
    probs.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=30, ha="right")
    probs.set(title="p(label) for eval examples", ylabel="probability", ylim=(0, 1))
    probs.legend(fontsize=7)
    values = []
    for label in labels:
        predicted = [label in r["predicted"] for r in rows]
        actual = [label in r["labels"] for r in rows]
        tp = sum(p and a for p, a in zip(predicted, actual))
        values.append(2 * tp / max(sum(predicted) + sum(actual), 1))
    f1.bar(labels, values, color="tab:purple")
    f1.set(title="F1 per label (predicted set)", ylabel="F1", ylim=(0, 1.02))
    f1.tick_params(axis="x", rotation=30)
    return _save(fig, folder / "multilabel_labels.png")


def _seq2seq(rows: list[dict], folder: Path) -> Path:
    similarity = [difflib.SequenceMatcher(None, r["samples"][0], r["reference"]).ratio() for r in rows]
    lengths = [len(r["prompt"].split()) for r in rows]
    fig, (hist, scatter) = _figure(2)
    hist.hist(similarity, bins=20, range=(0, 1), color="tab:blue")
    hist.set(title="per-example similarity to the reference", xlabel="character similarity (1 = exact)",
             ylabel="examples")
    scatter.scatter(lengths, similarity, alpha=0.5, color="tab:red", s=12)
    scatter.set(title="prompt length against similarity", xlabel="prompt words", ylabel="similarity",
                ylim=(-0.02, 1.02))
    return _save(fig, folder / "seq2seq_scores.png")
