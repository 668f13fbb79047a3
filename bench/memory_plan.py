"""P6, memory planning: the `plan` estimates (pure Python, from config.json or presets) against
DeepSpeed's estimator functions called directly, for flan-t5-small..xxl, ZeRO-2 and ZeRO-3,
on 4 GPUs (1 node x 4) and 16 GPUs (2 nodes x 8). Parameter counts are also checked against
the real HF model built on the meta device (no memory, no download).

    python bench/memory_plan.py
"""

from __future__ import annotations

import sys

from common import ROOT, machine, table

sys.path.insert(0, str(ROOT))

from workflow.launch.memory import PRESETS, model_states_gb, t5_config, t5_params  # noqa: E402

SETUPS = [(4, 1, 4), (16, 2, 8)]  # total GPUs, nodes, GPUs per node


def hf_param_count(cfg: dict) -> int:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(**cfg)
    config.tie_word_embeddings = cfg["tie_word_embeddings"]  # the constructor does not keep False here
    with torch.device("meta"):
        model = T5ForConditionalGeneration(config)
    # In the checkpoints encoder/decoder.embed_tokens are the `shared` matrix; on the meta device
    # with an untied head they come out as separate tensors, so count them once, by name.
    tied = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
    return sum(p.numel() for name, p in model.named_parameters(remove_duplicate=True) if name not in tied)


def main() -> None:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    rows, worst = [], 0.0
    for name in PRESETS:
        cfg = t5_config(f"google/{name}")
        size = t5_params(cfg)
        for gpus, nodes, per_node in SETUPS:
            for stage in (2, 3):
                ours, _ = model_states_gb(size, stage, per_node, nodes, False, False)
                if stage == 2:
                    theirs = estimate_zero2_model_states_mem_needs(size.total, per_node, nodes, False)[1]
                else:
                    theirs = estimate_zero3_model_states_mem_needs(size.total, size.largest_layer, per_node, nodes,
                                                                   False, False)[1]
                theirs /= 2**30
                error = abs(ours - theirs) / theirs
                worst = max(worst, error)
                rows.append([name, f"{size.total / 1e9:.3f}B", gpus, f"ZeRO-{stage}", f"{ours:.2f}", f"{theirs:.2f}",
                             f"{ours / theirs:.4f}"])
    print(f"P6 memory planning on {machine()}\n")
    print(table(["model", "params", "GPUs", "stage", "plan GB/GPU", "DeepSpeed GB/GPU", "ratio"], rows))
    print(f"\nworst relative difference: {worst:.2%} (goal: within 5%)")
    counts = [[n, f"{t5_params(t5_config('google/' + n)).total:,}", f"{hf_param_count(t5_config('google/' + n)):,}"]
              for n in ("flan-t5-small", "flan-t5-base", "flan-t5-xxl")]
    print("\nparameter counts from config.json vs the HF model (meta device):\n")
    print(table(["model", "plan", "HF model"], counts))


if __name__ == "__main__":
    main()
