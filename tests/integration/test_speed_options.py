"""Every speed option trains to the default's loss: 20 steps at the same seed, within 1e-3
relative at every logged step, on the tiny T5 and on a small model of flan-t5-xl's shape (gated
GELU, an untied head, heads x d_kv = d_model). These are the variants the GPU tournament
(bench/gpu_session.py) times; here, on CPU, each one is checked first, and an option that
cannot work here (a kernel, a compiler) must fall back, not fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, cli_env, run_cli

pytestmark = pytest.mark.integration

STEPS = {"max_steps": 20, "logging_steps": 5, "eval_steps": 20, "save_steps": 20, "train_batch_size": 8,
         "learning_rate": 1.0e-3, "warmup_steps": 0, "group_by_length": False, "seed": 7}
VARIANTS = {  # name -> overrides; the first is the default the others are held to. (eager and
    # flex_attention: the forward test below; FlexAttention's CPU fallback and the preemption
    # check's interval, which runs no collective in one process: tests/unit/test_knobs.py)
    "default": {},
    "rmsnorm": {"speed.fused_rms_norm": True},
    "compiled": {"speed.compile": True},
    "unsaved": {"train.save": False},
}
ZERO = {  # DeepSpeed variants, each against the same stage at its defaults
    "zero2": {"deepspeed.enabled": True, "deepspeed.stage": 2},
    "zero2-buckets": {"deepspeed.enabled": True, "deepspeed.stage": 2, "deepspeed.reduce_bucket_size": 500_000_000,
                      "deepspeed.allgather_bucket_size": 500_000_000},
    "zero3": {"deepspeed.enabled": True, "deepspeed.stage": 3},
    "zero3-resident": {"deepspeed.enabled": True, "deepspeed.stage": 3,
                       "deepspeed.stage3_param_persistence_threshold": 10_000_000,
                       "deepspeed.stage3_prefetch_bucket_size": 50_000_000},
}
XL_SHAPE = {"d_model": 128, "d_ff": 320, "num_heads": 2, "d_kv": 64, "num_layers": 3, "num_decoder_layers": 3,
            "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}


def xl_shaped(mount: Path) -> str:
    """A small model of flan-t5-xl's shape beside the tiny T5, with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tiny = mount / "models/tiny-t5"
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    base = T5Config.from_pretrained(tiny).to_dict()
    config = T5Config(**{**base, **XL_SHAPE, "dropout_rate": 0.0})
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    model.config.tie_word_embeddings = False
    out = mount / "models/xl-shaped"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return "xl-shaped"


def losses(tmp_path: Path, env: dict, name: str, model: str, variants: dict) -> dict[str, tuple[list, Path]]:
    """Each variant as its own job (the point hash leaves speed options out: one sweep would see
    the variants as one point): its logged losses and its run folder."""
    found = {}
    for variant, overrides in variants.items():
        spec = {"base": str(ROOT / "jobs/demo.yaml"), "model_init_name": model, "train": STEPS,
                "tracking": {"experiment": name}}
        path = tmp_path / f"{name}-{variant}.yaml"
        path.write_text(yaml.safe_dump(spec))
        result = run_cli("run", str(path), *(f"{k}={v}" for k, v in overrides.items()), env=env, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        manifest = json.loads((tmp_path / f"runs/{path.stem}/manifest.json").read_text())
        run_dir = Path(next(iter(manifest["points"].values()))["run_dir"])
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        found[variant] = ([r["value"] for r in rows if r.get("kind") == "metric" and r["key"] == "loss"], run_dir)
    return found


def assert_same_losses(found: dict, reference: str, names) -> None:
    want, _ = found[reference]
    assert len(want) == STEPS["max_steps"] // STEPS["logging_steps"], want
    for name in names:
        got, run_dir = found[name]
        assert len(got) == len(want), (name, got)
        worst = max(abs(g - w) / abs(w) for g, w in zip(got, want))
        assert worst < 1e-3, f"{name}: loss {got} against {reference} {want} (worst {worst:.2e})"


SHAPED = ("default", "rmsnorm", "compiled")  # on the xl-shaped model: the options its shape can change


def test_every_speed_option_trains_to_the_defaults_loss(tmp_path, own_mount):
    env = cli_env(tmp_path, own_mount)
    found = losses(tmp_path, env, "speed-tiny", "tiny-t5", VARIANTS)
    assert_same_losses(found, "default", [v for v in VARIANTS if v != "default"])
    assert "T5 blocks compiled (regional)" in (found["compiled"][1] / "log.txt").read_text()
    assert "T5 layer norms through torch.nn.functional.rms_norm" in (found["rmsnorm"][1] / "log.txt").read_text()
    unsaved = found["unsaved"][1]
    assert not (unsaved / "model").exists() and not list((unsaved / "checkpoints").glob("checkpoint-*"))
    assert (unsaved / "eval_results.json").is_file() and (unsaved / "predictions.json").is_file()


def test_the_kernel_options_train_an_xl_shaped_model_to_the_defaults_loss(tmp_path, own_mount):
    """Gated GELU, an untied head and 64-wide heads: the compiled blocks and the fused norm on the
    shape flan-t5-xl has (FlexAttention on it: the forward test below)."""
    env = cli_env(tmp_path, own_mount)
    xl_shaped(own_mount)
    found = losses(tmp_path, env, "speed-xl", "xl-shaped", {v: VARIANTS[v] for v in SHAPED})
    assert_same_losses(found, "default", SHAPED[1:])


def test_deepspeed_bucket_and_residency_options_train_to_the_same_loss(tmp_path, own_mount):
    env = cli_env(tmp_path, own_mount)
    xl_shaped(own_mount)
    found = losses(tmp_path, env, "speed-zero", "xl-shaped", ZERO)
    assert_same_losses(found, "zero2", ["zero2-buckets"])
    assert_same_losses(found, "zero3", ["zero3-resident"])


@pytest.mark.parametrize("model", ["tiny-t5", "xl-shaped"])
def test_flex_attention_computes_what_sdpa_does(own_mount, model):
    """FlexAttention with T5's relative position bias in its score_mod against sdpa with the bias
    as an additive mask: the same loss on a padded batch of two, forward only (CPU has no flex
    backward; a CPU job that trains falls back to sdpa, above). transformers' own flex path
    fails this on a batch above 1 (it indexes the bias by batch): speed.attention mends it."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from workflow.node import speed
    from workflow.spec import SpeedSpec

    if model == "xl-shaped":
        xl_shaped(own_mount)
    folder = own_mount / "models" / model
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["the red house", "a small dog runs fast"], padding=True, return_tensors="pt")
    labels = tokenizer(text_target=["la maison rouge", "un petit chien"], padding=True, return_tensors="pt")
    labels = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
    got = {}
    for kind in ("sdpa", "flex_attention", "eager"):
        chosen = speed.attention(SpeedSpec(attention=kind), training=False)
        net = AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation=chosen).eval()
        with torch.no_grad():
            got[kind] = net(**batch, labels=labels).loss.item()
    assert abs(got["flex_attention"] - got["sdpa"]) / got["sdpa"] < 1e-3, got
    assert abs(got["eager"] - got["sdpa"]) / got["sdpa"] < 1e-3, got
