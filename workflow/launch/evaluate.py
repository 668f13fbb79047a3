"""``launch.py evaluate``: a task's metrics from a predictions file, against references.

The predictions are what training (``predictions.json``) or ``predict`` wrote. References come
from the predictions themselves (``reference``, ``labels``, ``target``) or from a data file, matched
by input text. Which metrics apply follows from the references:

- strings (``completion`` or ``reference``): generation metrics (exact match, BLEU, ROUGE-L);
- label lists (``labels``): precision, recall and F1 at K and the exact set, over the generated
  samples (best first) or the per-label scores;
- numbers in [0, 1] (``target``) against ``score``: the classifier metrics.
"""

from __future__ import annotations

from pathlib import Path

from workflow import data, metrics
from workflow.errors import DataError, Problem

DEFAULT_GENERATION = ("exact_match", "bleu", "rouge_l")


def evaluate_file(predictions: Path, references: Path | None = None, names: list[str] | None = None,
                  k: int = 1) -> dict:
    """The metrics of a predictions file, against its own answers or a references data file."""
    task, preds = _load(predictions)
    key = "prompt" if task == "seq2seq" else "input"
    refs = _references(preds, data.load_inputs(references, task), key, predictions, references) if references \
        else preds
    if all("labels" in r for r in refs):
        gold = [r["labels"] for r in refs]
        if all(isinstance(p.get("scores"), dict) for p in preds):
            return metrics.multilabel_metrics([p["scores"] for p in preds], gold, k, [0.5], None)
        return metrics.label_set_metrics([list(dict.fromkeys(p["samples"])) for p in preds], gold, k)
    if task == "classifier":
        return metrics.classifier_metrics(_scores(preds, predictions), _targets(refs, references or predictions))
    texts = [r.get("reference", r.get("completion")) for r in refs]
    missing = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if missing:
        raise DataError(f"No references for {predictions}", [Problem(
            str(references or predictions), f"[{missing[0]}]", "a 'completion' or 'reference' string, or 'labels'",
            f"{len(missing)} record(s) without one", "pass --references <data file>")])
    return metrics.generation_metrics(list(names or DEFAULT_GENERATION), texts, [p["samples"] for p in preds])


def _load(path: Path) -> tuple[str, list[dict]]:
    """The records and their task: prompts (seq2seq) or inputs (classifier)."""
    try:
        return "seq2seq", data.load_inputs(path, "seq2seq")
    except DataError:
        return "classifier", data.load_inputs(path, "classifier")


def _references(preds: list[dict], refs: list[dict], key: str, predictions: Path, references: Path) -> list[dict]:
    by_input = {r[key]: r for r in refs}
    missing = [i for i, p in enumerate(preds) if p[key] not in by_input]
    if missing:
        some = "any" if len(missing) == len(preds) else "some"
        raise DataError(f"{references} has no reference for {some} predictions", [Problem(
            str(predictions), f"[{missing[0]}].{key}", f"an input that {references.name} also has", repr(
                preds[missing[0]][key][:80]), f"{len(missing)} of {len(preds)} unmatched")])
    return [by_input[p[key]] for p in preds]


def _scores(preds: list[dict], path: Path) -> list[float]:
    bad = [i for i, p in enumerate(preds) if not _number(p.get("score"))]
    if bad:
        raise DataError(f"Predictions without a score in {path}", [Problem(
            str(path), f"[{bad[0]}].score", "a number in [0, 1] (what predict writes for a classifier)",
            f"{len(bad)} record(s) without one")])
    return [float(p["score"]) for p in preds]


def _targets(refs: list[dict], path: Path) -> list[float]:
    bad = [i for i, r in enumerate(refs) if not _number(r.get("target"))]
    if bad:
        raise DataError(f"No targets for the predictions in {path}", [Problem(
            str(path), f"[{bad[0]}].target", "a number in [0, 1] for every record", f"{len(bad)} of {len(refs)} "
            "without one", "pass --references <a data file with the targets>")])
    return [float(r["target"]) for r in refs]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
