"""seq2seq: prompt -> completion fine-tuning with the HF Seq2SeqTrainer (the recipe's steps are
in workflow.node.recipe); evaluation generates on the eval split."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

from workflow import data as data_files
from workflow import metrics
from workflow.jsonio import read_json, write_json
from workflow.node import hf
from workflow.node.decoding import generate
from workflow.node.recipe import Recipe
from workflow.paths import runs_dir
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
        return evaluate(self.spec, model, self.tokenizer, self.records["eval"], self.rd.predictions)


def setup_data(spec: JobSpec, tokenizer, tracker, args):
    """The training split tokenized once into a memory-mapped Arrow dataset (see ``tokenized_train``),
    and the eval split, small, tokenized in memory (its records are also what generation reads)."""
    train_ds, train_truncated, cached = tokenized_train(spec, tokenizer, args)
    records = {"eval": read_json(cached / "eval.json")}
    columns = tokenize({k: [r[k] for r in records["eval"]] for k in ("prompt", "completion")}, tokenizer, spec.train)
    eval_ds = Dataset.from_dict(columns)
    for split, ds, truncated in (("train", train_ds, train_truncated), ("eval", eval_ds, sum(columns["truncated"]))):
        tracker.log_params({f"data.{split}.examples": len(ds), f"data.{split}.truncated": truncated})
        log.info("%s: %d examples, %d truncated", split, len(ds), truncated)
    return train_ds, eval_ds.remove_columns("truncated"), records


def tokenized_train(spec: JobSpec, tokenizer, args) -> tuple[Dataset, int, Path]:
    """Tokenize the training split once, by the first process, into an Arrow dataset that every
    rank memory-maps; keyed by the data's content, the tokenizer and the lengths, so a rerun or a
    requeue loads it instead of tokenizing again. JSON lines are read in blocks, never whole. The
    eval records are kept beside it (eval.json), so a rerun does not scan the data file for them."""
    folder = runs_dir() / ".cache" / "tokenized" / cache_key(spec, tokenizer)
    with args.main_process_first(local=False, desc="tokenizing the training split"):
        if not (folder / "meta.json").is_file():
            build_train(spec, tokenizer, folder)
    log.info("training split: memory-mapped from %s", folder)
    return Dataset.load_from_disk(str(folder / "dataset")), read_json(folder / "meta.json")["truncated"], folder


def cache_key(spec: JobSpec, tokenizer) -> str:
    digest = hashlib.sha256(f"seq2seq-v2|{spec.train.max_source_length}|{spec.train.max_target_length}|".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(tokenizer).encode())
    files = data_files.jsonl_files(spec.data_name) or {"json": data_files.data_path(spec.data_name)}
    for path in files.values():
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def build_train(spec: JobSpec, tokenizer, folder: Path) -> None:
    from datasets import load_dataset

    files = data_files.jsonl_files(spec.data_name)
    work = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    if files is None:  # a JSON data file is one document: read whole, as before
        raw = Dataset.from_list(data_files.read_split(spec.data_name, "train"))
    else:
        source = files.get("all") or files["train"]  # datasets reads JSON lines in blocks into Arrow
        raw = load_dataset("json", data_files=str(source), split="train", cache_dir=str(work / "raw"))
        if "all" in files:
            raw = raw.filter(lambda batch: [s == "train" for s in batch["split"]], batched=True)
    raw = raw.select_columns(["prompt", "completion"])
    started = time.time()
    done = raw.map(tokenize, batched=True, batch_size=10_000, remove_columns=["prompt", "completion"],
                   fn_kwargs={"tokenizer": tokenizer, "train": spec.train}, desc="tokenizing")
    truncated = sum(done["truncated"])
    done.remove_columns("truncated").save_to_disk(str(work / "dataset"))
    evaluation = [{"prompt": r["prompt"], "completion": r["completion"],
                   **({"labels": r["labels"]} if isinstance(r.get("labels"), list) else {})}
                  for r in data_files.read_split(spec.data_name, "eval")]
    write_json(work / "eval.json", evaluation)
    write_json(work / "meta.json", {"examples": len(done), "truncated": truncated, "seconds": time.time() - started})
    shutil.rmtree(work / "raw", ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.rename(work, folder)
    log.info("tokenized %d training examples in %.1f s into %s", len(done), time.time() - started, folder)


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
def evaluate(spec: JobSpec, model, tokenizer, records: list[dict], out: Path) -> dict:
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
