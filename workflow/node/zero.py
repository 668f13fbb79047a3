"""The DeepSpeed config: a pure function of the spec's ``deepspeed`` block.

The optimizer is torch's fused AdamW unless it is offloaded (see ``_torch_fused_adam``).
Values the HF Trainer knows (batch sizes, learning rate, precision, clipping) are "auto", so
the TrainingArguments stay the single source and cannot disagree with DeepSpeed. There is no
scheduler entry: the Trainer then builds the same linear warm-up/decay schedule as without
DeepSpeed.
A golden-file test pins the output.
"""

from __future__ import annotations

from workflow.spec import DeepSpeedSpec


def _torch_fused_adam(ds: DeepSpeedSpec) -> dict:
    """torch's fused AdamW (``torch_adam``, ``fused``) instead of DeepSpeed's FusedAdam, which is
    JIT-compiled with nvcc on each new node (minutes, and it fails on arch lists such as 9.0a).
    ZeRO wraps any torch optimizer; an offloaded optimizer keeps DeepSpeed's CPU Adam."""
    return {} if ds.offload_optimizer != "none" else {"torch_adam": True, "fused": True}


def deepspeed_config(ds: DeepSpeedSpec) -> dict:
    """ZeRO stage 0/2/3, optional CPU offload of optimizer states and parameters."""
    zero: dict = {"stage": ds.stage}
    if ds.stage >= 2:
        zero.update({"overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": ds.reduce_bucket_size,
                     "allgather_bucket_size": float(ds.allgather_bucket_size) if ds.stage == 2 else None})
    if ds.stage == 3:
        zero.pop("allgather_bucket_size")
        zero.update({"stage3_prefetch_bucket_size": ds.stage3_prefetch_bucket_size,
                     "stage3_param_persistence_threshold": ds.stage3_param_persistence_threshold,
                     "stage3_max_live_parameters": float(ds.stage3_max_live_parameters),
                     "stage3_max_reuse_distance": 1e9, "sub_group_size": 1e9,
                     "stage3_gather_16bit_weights_on_model_save": ds.gather_16bit_weights_on_save})
    if ds.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": ds.offload_optimizer, "pin_memory": True}
    if ds.offload_param != "none":
        zero["offload_param"] = {"device": ds.offload_param, "pin_memory": True}
    zero = {k: v for k, v in zero.items() if v is not None}
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000,
                 "hysteresis": 2, "min_loss_scale": 1},
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                  "weight_decay": "auto", **_torch_fused_adam(ds)}},
        "zero_optimization": zero,
        "steps_per_print": 1000000,
        "wall_clock_breakdown": False,
    }
