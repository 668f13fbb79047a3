"""classifier: score p(yes) = softmax over the "yes" and "no" logits at the first decoder step,
trained with binary cross-entropy against a soft target in [0, 1].

Multi-label data (``labels`` per record) becomes one yes/no question per (input, label), so the
same head scores every label independently: top-K ranking and thresholds come for free and the
model can never emit a label outside the set.

Its recipe writes setup (model, tokenizer, rows, Trainer) and evaluate (score the eval rows); the
steps are driven by workflow.node.recipe.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from datasets import Dataset
from transformers import Trainer

from workflow import data as data_files
from workflow import metrics
from workflow.errors import DataError, Problem
from workflow.jsonio import write_json
from workflow.node import hf, tokenized
from workflow.node.recipe import Recipe
from workflow.spec import JobSpec

log = logging.getLogger("workflow.classifier")


class ClassifierRecipe(Recipe):
    def setup(self, args, callbacks: list) -> Trainer:
        spec = self.spec
        args.prediction_loss_only = True
        model, self.tokenizer = hf.load_model(spec, self.tracker)
        self.yes_no = yes_no_ids(self.tokenizer)
        self.start = model.config.decoder_start_token_id  # read before DeepSpeed wraps the model
        self.labels = data_files.labels_of(spec.data_name, spec.classifier.labels)
        cfg, limit = spec.classifier, spec.train.max_source_length
        settings = (f"classifier|{limit}|{cfg.template}|{cfg.multilabel_template}|{self.labels}|"
                    f"{cfg.negatives_per_positive}|{spec.train.seed if cfg.negatives_per_positive else ''}")
        train_ds, truncated, evaluation = tokenized.cached(
            spec.data_name, self.tokenizer, settings,
            lambda batch: columns(to_rows(tokenized.records(batch), spec, self.labels, train=True), self.tokenizer,
                                  limit), args)
        self.tracker.log_params({"data.train.rows": len(train_ds), "data.train.truncated": truncated})
        log.info("train: %d rows, %d truncated", len(train_ds), truncated)
        self.raw = {"eval": evaluation}
        self.rows = {"eval": to_rows(evaluation, spec, self.labels, train=False)}
        eval_ds = tokenize(self.rows["eval"], self.tokenizer, spec, self.tracker, "eval")
        self.params = {"classifier.multilabel": self.labels is not None}
        return Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                       data_collator=Collator(self.tokenizer.pad_token_id, self.start),
                       processing_class=self.tokenizer, compute_loss_func=YesNoLoss(self.yes_no), callbacks=callbacks)

    def evaluate(self, model) -> dict:
        scores = score(model, self.tokenizer, self.rows["eval"], self.spec, self.yes_no, self.start)
        return classifier_results(self.raw["eval"], self.rows["eval"], scores, self.spec, self.labels,
                                  self.rd.predictions)


def yes_no_ids(tokenizer) -> tuple[int, int]:
    """Ids of "yes" and "no"; each must be one token (T5's are ▁yes / ▁no)."""
    ids = []
    for word in ("yes", "no"):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise DataError("The tokenizer cannot score yes/no", [Problem(
                "tokenizer", word, "a single token", f"{len(pieces)} tokens {pieces}")])
        ids.append(pieces[0])
    return ids[0], ids[1]


def to_rows(records: list[dict], spec: JobSpec, labels: list[str] | None, train: bool) -> list[dict]:
    """Records -> {"text", "target", "record", "label"} rows; multi-label expands per label."""
    cfg = spec.classifier
    if labels is None or "labels" not in records[0]:
        return [{"text": cfg.template.format(input=r["input"]), "target": float(r["target"]),
                 "record": i, "label": ""} for i, r in enumerate(records)]
    rng = random.Random(spec.train.seed)
    rows = []
    for i, record in enumerate(records):
        chosen = labels
        if train and cfg.negatives_per_positive:
            negatives = [x for x in labels if x not in record["labels"]]
            k = min(len(negatives), cfg.negatives_per_positive * max(1, len(record["labels"])))
            chosen = list(record["labels"]) + rng.sample(negatives, k)
        for label in chosen:
            rows.append({"text": cfg.multilabel_template.format(input=record["input"], label=label),
                         "target": float(label in record["labels"]), "record": i, "label": label})
    return rows


def tokenize(rows: list[dict], tokenizer, spec: JobSpec, tracker, split: str) -> Dataset:
    found = columns(rows, tokenizer, spec.train.max_source_length)
    truncated = sum(found.pop("truncated"))
    tracker.log_params({f"data.{split}.rows": len(rows), f"data.{split}.truncated": truncated})
    log.info("%s: %d rows, %d truncated", split, len(rows), truncated)
    return Dataset.from_dict(found)


def columns(rows: list[dict], tokenizer, limit: int) -> dict:
    """Token ids (an over-long input is cut, ending in </s>, and counted), targets and lengths."""
    ids = tokenizer([r["text"] for r in rows])["input_ids"]
    truncated = [len(x) > limit for x in ids]
    ids = [x if len(x) <= limit else x[:limit - 1] + [tokenizer.eos_token_id] for x in ids]
    return {"input_ids": ids, "labels": [r["target"] for r in rows], "length": [len(x) for x in ids],
            "truncated": truncated}


class Collator:
    """Dynamic padding; one decoder step (the start token); float targets as labels."""

    def __init__(self, pad_id: int, start_id: int):
        self.pad_id, self.start_id = pad_id, start_id

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, :len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, :len(f["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "decoder_input_ids": torch.full((len(features), 1), self.start_id, dtype=torch.long),
                "labels": torch.tensor([float(f["labels"]) for f in features])}


class YesNoLoss:
    """BCE of p(yes) against the target, from log-softmax over the (yes, no) logits."""

    def __init__(self, yes_no: tuple[int, int]):
        self.index = list(yes_no)

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logp = torch.log_softmax(outputs.logits[:, 0, self.index].float(), dim=-1)
        labels = labels.to(logp.dtype)
        return -(labels * logp[:, 0] + (1 - labels) * logp[:, 1]).mean()


@torch.no_grad()
def score(model, tokenizer, rows: list[dict], spec: JobSpec, yes_no: tuple[int, int], start: int) -> list[float]:
    model.eval()
    collate = Collator(tokenizer.pad_token_id, start)
    ds = tokenize(rows, tokenizer, spec, _NoTracker(), "score")
    out = []
    size = spec.train.eval_batch_size
    for begin in range(0, len(ds), size):
        batch = collate([ds[i] for i in range(begin, min(begin + size, len(ds)))])
        batch.pop("labels")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(**batch).logits[:, 0, list(yes_no)].float()
        out += torch.softmax(logits, dim=-1)[:, 0].tolist()
    return out


class _NoTracker:
    def log_params(self, params: dict) -> None:
        pass


def classifier_results(records: list[dict], rows: list[dict], scores: list[float], spec: JobSpec,
                       labels: list[str] | None, out: Path) -> dict:
    """The eval split's metrics from its p(yes) scores (binary, or per label), and its predictions file."""
    cfg = spec.classifier
    if labels is None or "labels" not in records[0]:
        targets = [r["target"] for r in rows]
        predictions = [{"input": rec["input"], "target": rec["target"], "score": s}
                       for rec, s in zip(records, scores)]
        results = metrics.classifier_metrics(scores, targets)
    else:
        per_record: list[dict[str, float]] = [{} for _ in records]
        for row, s in zip(rows, scores):
            per_record[row["record"]][row["label"]] = s
        predictions = [{"input": rec["input"], "labels": rec["labels"], "scores": sc,
                        "predicted": metrics.predict_labels(sc, cfg.thresholds, cfg.default_label)}
                       for rec, sc in zip(records, per_record)]
        results = metrics.multilabel_metrics(per_record, [r["labels"] for r in records], cfg.top_k,
                                             cfg.thresholds, cfg.default_label)
        results.update(metrics.classifier_metrics(scores, [r["target"] for r in rows]))
    write_json(out, predictions)
    log.info("eval: %s", results)
    return results
