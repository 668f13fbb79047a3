"""Export a trained point as a standard HF model that ``from_pretrained`` loads.

- LoRA adapters are merged into the base model (``merge_and_unload``), and the merged model's
  logits are checked against the adapter model's on the eval prompts.
- A ZeRO checkpoint without consolidated weights is gathered with DeepSpeed's zero_to_fp32.
Heavy imports happen inside: this runs where jobs run, never at CLI start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workflow.errors import JobError, Problem
from workflow.rundir import RunDir
from workflow.spec import JobSpec

TOLERANCE = 1e-5


@dataclass(frozen=True)
class ExportResult:
    source: str
    out: str
    kind: str              # "lora-merged", "zero-consolidated" or "copy"
    max_abs_diff: float | None


def export(rd: RunDir, out: Path | None = None) -> ExportResult:
    """Export the point of run directory ``rd`` to ``out`` (default: <run dir>/export; a relative
    one is relative to the working directory, where the command runs)."""
    spec = JobSpec.model_validate(rd.read_job()["spec"])
    model_dir, out = spec.model_dir(rd), Path(out).expanduser().resolve() if out else rd.root / "export"
    if (model_dir / "adapter_config.json").is_file():
        return _merge_lora(model_dir, out, rd)
    checkpoint = rd.latest_checkpoint()  # the newest *complete* one, as training resumes from
    if not _has_weights(model_dir) and checkpoint:
        return _consolidate_zero(Path(checkpoint), out, spec)
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


def _merge_lora(model_dir: Path, out: Path, rd: RunDir) -> ExportResult:
    import torch
    from peft import AutoPeftModelForSeq2SeqLM
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    adapter = AutoPeftModelForSeq2SeqLM.from_pretrained(str(model_dir)).eval()
    batch = _probe_batch(tokenizer, rd)
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


def _consolidate_zero(checkpoint: Path, out: Path, spec: JobSpec) -> ExportResult:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(spec.model_source)
    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint))
    model.load_state_dict(state, strict=False)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(spec.model_source).save_pretrained(str(out))
    return ExportResult(str(checkpoint), str(out), "zero-consolidated", None)


def _probe_batch(tokenizer, rd: RunDir) -> dict:
    """A few eval prompts (or a fixed sentence) with one decoder step, for comparing outputs."""
    import torch

    from workflow.jsonio import read_json

    saved = read_json(rd.predictions) or []  # a list of records; {} when absent
    prompts = [p.get("prompt") or p.get("input") for p in saved[:8]] or ["translate: red big dog"]
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    start = torch.zeros((len(prompts), 1), dtype=torch.long)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "decoder_input_ids": start}
