"""Model FLOPs of T5 training, for MFU (model FLOPs utilisation).

Counted: every matrix multiply of the forward pass, at 2 FLOPs per multiply-accumulate, with
the encoder at ``src_len`` tokens and the decoder at ``tgt_len`` tokens:

- encoder layer: q, k, v, o projections (``d_model x heads*d_kv`` each), the scores
  ``Q K^T`` and ``A V`` (``src_len x src_len x heads*d_kv`` each), and the MLP (3 matrices
  ``d_model x d_ff`` when gated (flan-t5's gated-gelu), else 2);
- decoder layer: self-attention as above at ``tgt_len``; cross-attention with q and o at
  ``tgt_len``, k and v projections of the encoder output at ``src_len``, scores and ``A V`` of
  ``tgt_len x src_len``; the MLP at ``tgt_len``;
- the LM head: ``tgt_len x d_model x vocab``.

Not counted: embeddings (lookups), layer norms, softmax, the relative-position bias, dropout,
the loss. A full fine-tuning step costs 3 x the forward (backward: gradients of activations
and of weights, each about one forward). LoRA freezes the base weights, so its backward skips
the weight gradients: 2 x the forward (the adapters' own FLOPs are under 1% at r=16 and are
left out). Padding is counted as work only if it is in ``src_len``/``tgt_len``.

For flan-t5-xl shapes (d_model 2048, d_ff 5120, 32 heads x 64, 24 + 24 layers, vocab 32128)
at 512 source / 128 target tokens: forward 1.824 TFLOP, full training 5.472 TFLOP per sample
(``python bench/flops.py`` prints the breakdown).
"""

from __future__ import annotations

import argparse
import json

XL = dict(d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24,
          vocab_size=32128, feed_forward_proj="gated-gelu")


def forward_flops(cfg: dict, src_len: int, tgt_len: int) -> dict[str, float]:
    """Forward-pass FLOPs of one example, by part (2 FLOPs per multiply-accumulate)."""
    d, ff, vocab = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    inner = cfg["num_heads"] * cfg["d_kv"]
    enc_layers = cfg["num_layers"]
    dec_layers = cfg.get("num_decoder_layers") or cfg["num_layers"]
    mlp_mats = 3 if str(cfg.get("feed_forward_proj", "relu")).startswith("gated") else 2
    s, t = src_len, tgt_len

    def attention(q_len: int, kv_len: int) -> tuple[float, float]:
        """(projections, scores + weighted sum) MACs of one attention block."""
        projections = 2 * q_len * d * inner + 2 * kv_len * d * inner  # q, o at q_len; k, v at kv_len
        scores = 2 * q_len * kv_len * inner                           # Q K^T and A V
        return projections, scores

    enc_proj, enc_scores = attention(s, s)
    enc_mlp = mlp_mats * s * d * ff
    self_proj, self_scores = attention(t, t)
    cross_proj, cross_scores = attention(t, s)
    dec_mlp = mlp_mats * t * d * ff
    macs = {
        "encoder_projections": enc_layers * enc_proj,
        "encoder_attention_scores": enc_layers * enc_scores,
        "encoder_mlp": enc_layers * enc_mlp,
        "decoder_self_projections": dec_layers * self_proj,
        "decoder_self_scores": dec_layers * self_scores,
        "decoder_cross_projections": dec_layers * cross_proj,
        "decoder_cross_scores": dec_layers * cross_scores,
        "decoder_mlp": dec_layers * dec_mlp,
        "lm_head": t * d * vocab,
    }
    return {k: 2.0 * v for k, v in macs.items()}


def train_flops_per_sample(cfg: dict, src_len: int, tgt_len: int, lora: bool = False) -> float:
    """Model FLOPs of one training example: 3 x forward (full fine-tuning) or 2 x (LoRA: no
    weight gradients for the frozen base)."""
    return (2.0 if lora else 3.0) * sum(forward_flops(cfg, src_len, tgt_len).values())


def mfu(samples_per_s: float, flops_per_sample: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the hardware's peak FLOP/s."""
    return samples_per_s * flops_per_sample / (peak_tflops * 1e12)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="T5 model FLOPs per training example.")
    p.add_argument("--config", help="a model's config.json (default: flan-t5-xl shapes)")
    p.add_argument("--src_len", type=int, default=512)
    p.add_argument("--tgt_len", type=int, default=128)
    a = p.parse_args(argv)
    cfg = XL
    if a.config:
        with open(a.config) as handle:
            cfg = json.load(handle)
    parts = forward_flops(cfg, a.src_len, a.tgt_len)
    for name, value in parts.items():
        print(f"{name:28s} {value / 1e9:10.1f} GFLOP")
    fwd = sum(parts.values())
    out = {"forward_tflop": fwd / 1e12, "train_tflop_per_sample": train_flops_per_sample(cfg, a.src_len, a.tgt_len),
           "lora_train_tflop_per_sample": train_flops_per_sample(cfg, a.src_len, a.tgt_len, lora=True)}
    out["train_tflop_per_sample"] /= 1e12
    out["lora_train_tflop_per_sample"] /= 1e12
    print(f"forward {out['forward_tflop']:.3f} TFLOP; training {out['train_tflop_per_sample']:.3f} TFLOP/sample "
          f"(3 x forward); LoRA {out['lora_train_tflop_per_sample']:.3f} TFLOP/sample (2 x forward)")
    return out


if __name__ == "__main__":
    main()
