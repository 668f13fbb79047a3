"""Baseline for the GPU throughput benchmark: the plain Hugging Face script a user would write.

Fine-tunes a seq2seq model on a ``{"train": [...], "eval": [...]}`` JSON file of
``{"prompt", "completion"}`` records with ``Seq2SeqTrainer``: the fused AdamW, bf16 mixed precision
on a GPU (fp32 on CPU), no DeepSpeed, no reporting, dynamic padding, prompts and
completions truncated to the max lengths (EOS kept), the default random sampler, the eval loss
on the eval split at the last step. Prints one JSON line:

- ``samples_per_second``: training throughput after the first logging interval (warm-up),
  measured between the first and the last loss log (each log syncs the GPU through ``.item()``);
  the tool's own per-interval ``samples_per_second`` rows are measured the same way;
- ``train_samples_per_second``: HF's figure over the whole ``train()`` (first steps and the eval
  at the last step included);
- ``eval_loss``, and ``gpu_peak_memory_gb``: ``torch.cuda.max_memory_reserved()`` / 2**30 after
  training (null on CPU).

    python bench/gpu_baseline.py --model mount/models/xl-shaped --data data.json \
        --output_dir /tmp/baseline --max_steps 60 --batch_size 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from baseline_seq2seq import load_splits  # the same tokenisation as the CPU baseline (P4)
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                          Seq2SeqTrainingArguments, TrainerCallback, set_seed)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (from_pretrained)")
    p.add_argument("--data", required=True, help="JSON file with train and eval splits")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--warmup_steps", type=int, default=0)
    p.add_argument("--max_steps", type=int, default=60)
    p.add_argument("--batch_size", type=int, default=8, help="micro batch per device")
    p.add_argument("--eval_batch_size", type=int, default=8)
    p.add_argument("--logging_steps", type=int, default=10)
    p.add_argument("--max_source_length", type=int, default=512)
    p.add_argument("--max_target_length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--save_model", action="store_true", help="save the final model to <output_dir>/final")
    p.add_argument("--result_json", help="also write the results here")
    return p.parse_args(argv)


class Throughput(TrainerCallback):
    """Wall time of each loss log (HF computes the loss with ``.item()`` first: the GPU is synced)."""

    def __init__(self):
        self.marks: list[tuple[int, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.marks.append((state.global_step, time.perf_counter()))

    def samples_per_second(self, batch: int) -> float | None:
        """Samples/s between the first and the last loss log: the first interval is the warm-up."""
        if len(self.marks) < 2:
            return None
        (s0, t0), (s1, t1) = self.marks[0], self.marks[-1]
        return (s1 - s0) * batch / (t1 - t0)


def main(argv=None) -> dict:
    a = parse_args(argv)
    gpu = torch.cuda.is_available()
    set_seed(a.seed)
    args = Seq2SeqTrainingArguments(
        output_dir=a.output_dir,
        learning_rate=a.learning_rate,
        warmup_steps=a.warmup_steps,
        max_steps=a.max_steps,
        per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=a.eval_batch_size,
        eval_strategy="steps",
        eval_steps=a.max_steps,
        save_strategy="no",
        logging_steps=a.logging_steps,
        seed=a.seed,
        bf16=gpu,
        optim="adamw_torch_fused",
        report_to="none",
        disable_tqdm=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(a.model)
    train_ds, eval_ds = load_splits(a.data, tokenizer, a.max_source_length, a.max_target_length)
    throughput = Throughput()
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, padding=True),
                             processing_class=tokenizer, callbacks=[throughput])
    train = trainer.train().metrics
    peak = torch.cuda.max_memory_reserved() / 2 ** 30 if gpu else None
    eval_loss = [row["eval_loss"] for row in trainer.state.log_history if "eval_loss" in row][-1]
    if a.save_model:
        trainer.save_model(str(Path(a.output_dir) / "final"))
    results = {"samples_per_second": throughput.samples_per_second(a.batch_size),
               "train_samples_per_second": train["train_samples_per_second"],
               "train_runtime": train["train_runtime"],
               "eval_loss": eval_loss,
               "gpu_peak_memory_gb": peak,
               "gpu_peak_memory_allocated_gb": torch.cuda.max_memory_allocated() / 2 ** 30 if gpu else None,
               "parameters": sum(p.numel() for p in model.parameters()),
               "model_dtype": str(next(model.parameters()).dtype),
               "optim": args.optim.value if hasattr(args.optim, "value") else str(args.optim)}
    line = json.dumps(results)
    print(line)
    if a.result_json:
        Path(a.result_json).write_text(line + "\n")
    return results


if __name__ == "__main__":
    main()
