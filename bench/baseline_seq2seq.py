"""Baseline for benchmark P4: the plain Hugging Face script a user would write instead of the tool.

It fine-tunes a seq2seq model on a ``{"train": [...], "eval": [...]}`` JSON file of
``{"prompt", "completion"}`` records with ``Seq2SeqTrainer``: dynamic padding
(``DataCollatorForSeq2Seq(padding=True)``), the default random sampler, fp32, CPU, no
reporting. Evaluation and checkpoint strategies mirror the tool's (``steps``), so both
sides do the same work besides sampling. Prints one JSON line with the results.

    python bench/baseline_seq2seq.py --model mount/models/tiny-t5 --data data.json \
        --output_dir /tmp/baseline --max_steps 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                          Seq2SeqTrainingArguments, set_seed)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (from_pretrained)")
    p.add_argument("--data", required=True, help="JSON file with train and eval splits")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--warmup_steps", type=int, default=30)
    p.add_argument("--max_steps", type=int, default=300)
    p.add_argument("--train_batch_size", type=int, default=32)
    p.add_argument("--eval_batch_size", type=int, default=64)
    p.add_argument("--eval_steps", type=int, default=100)
    p.add_argument("--save_steps", type=int, default=100)
    p.add_argument("--logging_steps", type=int, default=25)
    p.add_argument("--max_source_length", type=int, default=256)
    p.add_argument("--max_target_length", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--result_json", help="also write the results here")
    return p.parse_args(argv)


def load_splits(path: str, tokenizer, max_source: int, max_target: int) -> tuple[Dataset, Dataset]:
    """Tokenize prompts and completions, truncating to the max lengths (EOS kept)."""
    raw = json.loads(Path(path).read_text())

    def encode(batch):
        enc = tokenizer(batch["prompt"], max_length=max_source, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["completion"], max_length=max_target,
                                  truncation=True)["input_ids"]
        return enc

    out = []
    for split in ("train", "eval"):
        ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in raw[split]])
        out.append(ds.map(encode, batched=True, remove_columns=["prompt", "completion"]))
    return out[0], out[1]


def training_args(a: argparse.Namespace) -> Seq2SeqTrainingArguments:
    return Seq2SeqTrainingArguments(
        output_dir=a.output_dir,
        learning_rate=a.learning_rate,
        warmup_steps=a.warmup_steps,
        max_steps=a.max_steps,
        per_device_train_batch_size=a.train_batch_size,
        per_device_eval_batch_size=a.eval_batch_size,
        eval_strategy="steps",
        eval_steps=a.eval_steps,
        save_strategy="steps",
        save_steps=a.save_steps,
        save_total_limit=2,
        logging_steps=a.logging_steps,
        seed=a.seed,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
    )


def main(argv=None) -> dict:
    a = parse_args(argv)
    set_seed(a.seed)
    args = training_args(a)
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(a.model)
    train_ds, eval_ds = load_splits(a.data, tokenizer, a.max_source_length, a.max_target_length)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, padding=True),
                             processing_class=tokenizer)
    train = trainer.train().metrics
    eval_in_train = _eval_runtime_in_train(trainer)  # before the final evaluate() adds its own row
    final_eval = trainer.evaluate()
    trainer.save_model(str(Path(a.output_dir) / "final"))
    results = {"train_runtime": train["train_runtime"],
               "train_samples_per_second": train["train_samples_per_second"],
               "eval_runtime_in_train": eval_in_train,
               "eval_loss": final_eval["eval_loss"],
               "model_dir": str(Path(a.output_dir) / "final"),
               "torch_threads": torch.get_num_threads()}
    line = json.dumps(results)
    print(line)
    if a.result_json:
        Path(a.result_json).write_text(line + "\n")
    return results


def _eval_runtime_in_train(trainer) -> float:
    """Seconds spent in the evaluations that ran inside ``train()`` (they count in train_runtime)."""
    return sum(row.get("eval_runtime", 0.0) for row in trainer.state.log_history if "eval_loss" in row)


if __name__ == "__main__":
    main()
