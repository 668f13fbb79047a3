"""seq2seq: prompt -> completion fine-tuning with the HF Seq2SeqTrainer (the recipe's steps are
in workflow.node.recipe); evaluation generates on the eval split."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

from workflow import metrics
from workflow.jsonio import write_json
from workflow.node import hf, tokenized
from workflow.node.decoding import generate
from workflow.node.recipe import Recipe
from workflow.spec import JobSpec, TrainSpec

log = logging.getLogger("workflow.seq2seq")


class Seq2SeqRecipe(Recipe):
    def setup(self, args, callbacks: list) -> Seq2SeqTrainer:
        model, self.tokenizer = hf.load_model(self.spec, self.tracker)
        train_ds, eval_ds, self.records = setup_data(self.spec, self.tokenizer, self.tracker, args)
        collator = DataCollatorForSeq2Seq(self.tokenizer, model=model, padding=True)
        return Seq2SeqTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                              data_collator=collator, processing_class=self.tokenizer, callbacks=callbacks)

    def evaluate(self, model) -> dict:
        return generate_and_score(self.spec, model, self.tokenizer, self.records["eval"], self.rd.predictions)


def setup_data(spec: JobSpec, tokenizer, tracker, args):
    """The training split tokenized once and memory-mapped (``workflow.node.tokenized``), and the
    eval split, small, tokenized in memory (its records are also what generation reads)."""
    train = spec.train
    train_ds, train_truncated, evaluation = tokenized.cached(
        spec.data_name, tokenizer, f"seq2seq|{train.max_source_length}|{train.max_target_length}",
        lambda batch: tokenize(batch, tokenizer, train), args)
    records = {"eval": [{"prompt": r["prompt"], "completion": r["completion"],
                         **({"labels": r["labels"]} if isinstance(r.get("labels"), list) else {})}
                        for r in evaluation]}
    columns = tokenize({k: [r[k] for r in records["eval"]] for k in ("prompt", "completion")}, tokenizer, train)
    eval_ds = Dataset.from_dict(columns)
    for split, ds, truncated in (("train", train_ds, train_truncated), ("eval", eval_ds, sum(columns["truncated"]))):
        tracker.log_params({f"data.{split}.examples": len(ds), f"data.{split}.truncated": truncated})
        log.info("%s: %d examples, %d truncated", split, len(ds), truncated)
    return train_ds, eval_ds.remove_columns("truncated"), records


def tokenize(batch: dict, tokenizer, train: TrainSpec) -> dict:
    """Columns of tokenized examples; an over-long prompt or completion is cut (ending in </s>) and counted."""
    src = tokenizer(list(batch["prompt"]))["input_ids"]
    tgt = tokenizer(text_target=list(batch["completion"]))["input_ids"]
    max_src, max_tgt = train.max_source_length, train.max_target_length
    eos = tokenizer.eos_token_id
    truncated = [len(s) > max_src or len(t) > max_tgt for s, t in zip(src, tgt)]
    src = [s if len(s) <= max_src else s[:max_src - 1] + [eos] for s in src]
    tgt = [t if len(t) <= max_tgt else t[:max_tgt - 1] + [eos] for t in tgt]
    return {"input_ids": src, "attention_mask": [[1] * len(s) for s in src], "labels": tgt,
            "length": [len(s) + len(t) for s, t in zip(src, tgt)], "truncated": truncated}


@torch.no_grad()
def generate_and_score(spec: JobSpec, model, tokenizer, records: list[dict], out: Path) -> dict:
    """Generate on the eval split; the generate block's metrics on the first sample and on any of n."""
    gen = spec.generate
    model.eval()
    predictions = []
    batch_size = spec.train.eval_batch_size
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        samples = generate(model, tokenizer, [r["prompt"] for r in batch], gen, spec.train.max_source_length)
        for record, outs in zip(batch, samples):
            predictions.append({"prompt": record["prompt"], "reference": record["completion"], "samples": outs,
                                **({"labels": record["labels"]} if "labels" in record else {})})
    write_json(out, predictions)
    results = metrics.generation_metrics(gen.metrics, [p["reference"] for p in predictions],
                                         [p["samples"] for p in predictions])
    if all("labels" in p for p in predictions):  # label sets (a taxonomy): the samples are a ranking
        ranked, gold = [list(dict.fromkeys(p["samples"])) for p in predictions], [p["labels"] for p in predictions]
        results.update(metrics.label_set_metrics(ranked, gold, gen.n_samples))
    log.info("eval generation: %s", results)
    return results
