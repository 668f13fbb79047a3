"""Export a trained point as a standard HF model that ``from_pretrained`` loads.

- LoRA adapters are merged into the base model (``merge_and_unload``), and the merged model's
  logits are checked against the adapter model's on the eval prompts.
- A ZeRO checkpoint without consolidated weights is gathered with DeepSpeed's zero_to_fp32.
Heavy imports happen inside: this runs where jobs run, never at CLI start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workflow.checkpoints import latest_checkpoint
from workflow.errors import JobError, Problem
from workflow.rundir import RunDir

TOLERANCE = 1e-5


@dataclass(frozen=True)
class ExportResult:
    source: str
    out: str
    kind: str              # "lora-merged", "zero-consolidated" or "copy"
    max_abs_diff: float | None


def export(model_dir: Path, out: Path, run_dir: Path) -> ExportResult:
    if (model_dir / "adapter_config.json").is_file():
        return _merge_lora(model_dir, out, run_dir)
    checkpoint = latest_checkpoint(RunDir(run_dir))  # the newest *complete* one, as training resumes from
    if not _has_weights(model_dir) and checkpoint:
        return _consolidate_zero(Path(checkpoint), out, run_dir)
    if not _has_weights(model_dir):
        raise JobError(f"Nothing to export in {model_dir}", [Problem(str(model_dir), None,
                       "model weights, LoRA adapters or a ZeRO checkpoint", "none found")])
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    AutoModelForSeq2SeqLM.from_pretrained(str(model_dir)).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(out))
    return ExportResult(str(model_dir), str(out), "copy", None)


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) and not (folder / "adapter_config.json").is_file() or any(
        folder.glob("pytorch_model*.bin"))


def _merge_lora(model_dir: Path, out: Path, run_dir: Path) -> ExportResult:
    import torch
    from peft import AutoPeftModelForSeq2SeqLM
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    adapter = AutoPeftModelForSeq2SeqLM.from_pretrained(str(model_dir)).eval()
    batch = _probe_batch(tokenizer, run_dir)
    with torch.no_grad():
        before = adapter(**batch).logits
        merged = adapter.merge_and_unload()
        merged.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        reloaded = AutoModelForSeq2SeqLM.from_pretrained(str(out)).eval()
        after = reloaded(**batch).logits
    diff = float((before - after).abs().max())
    if diff > TOLERANCE:
        raise JobError("The merged model differs from the adapter model", [Problem(
            str(out), None, f"max |logit difference| <= {TOLERANCE}", f"{diff:.3g}")])
    return ExportResult(str(model_dir), str(out), "lora-merged", diff)


def _consolidate_zero(checkpoint: Path, out: Path, run_dir: Path) -> ExportResult:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from workflow.plan import model_source

    spec = json.loads((run_dir / "job.json").read_text())["spec"]
    model = AutoModelForSeq2SeqLM.from_pretrained(model_source(spec))
    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint))
    model.load_state_dict(state, strict=False)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(model_source(spec)).save_pretrained(str(out))
    return ExportResult(str(checkpoint), str(out), "zero-consolidated", None)


def _probe_batch(tokenizer, run_dir: Path) -> dict:
    """A few eval prompts (or a fixed sentence) with one decoder step, for comparing outputs."""
    import torch

    prompts = ["translate: red big dog"]
    predictions = run_dir / "predictions.json"
    if predictions.is_file():
        prompts = [p["prompt"] for p in json.loads(predictions.read_text())[:8]] or prompts
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    start = torch.zeros((len(prompts), 1), dtype=torch.long)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "decoder_input_ids": start}
