"""The ``speed`` block on a loaded model: how it computes, never what. T5's layer norm through
torch's fused ``rms_norm``, and regional ``torch.compile`` of the T5 blocks (the attention kernel
is ``from_pretrained``'s ``attn_implementation``). Each falls back to the default, with a
warning, where the installed torch lacks it."""

from __future__ import annotations

import logging
import types

import torch

from workflow.spec import SpeedSpec

log = logging.getLogger("workflow.speed")


def attention(speed: SpeedSpec, training: bool = True) -> str:
    """The attention kernel ``from_pretrained`` gets. FlexAttention has no backward pass on CPU
    (torch raises NotImplementedError): a CPU job that trains uses sdpa, and says so."""
    if speed.attention == "flex_attention" and training and not torch.cuda.is_available():
        log.warning("speed.attention: flex_attention cannot train on CPU (no backward pass there); using sdpa")
        return "sdpa"
    if speed.attention == "flex_attention":
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        AttentionInterface.register(FLEX, flex_with_batched_bias)
        AttentionMaskInterface.register(FLEX, ALL_MASK_ATTENTION_FUNCTIONS["flex_attention"])  # block masks
        return FLEX
    return speed.attention


FLEX = "t5_flex_attention"


def flex_with_batched_bias(module, query, key, value, attention_mask, position_bias=None, **kwargs):
    """transformers' FlexAttention with T5's position bias broadcast over the batch first. Its
    score_mod reads ``position_bias[batch, head, q, kv]``, and T5's bias has a batch of 1: on CPU
    the second example of a batch fails a bounds check, on a GPU it reads past the tensor. The
    expanded view costs no memory (stride 0 over the batch)."""
    from transformers.integrations.flex_attention import flex_attention_forward

    if position_bias is not None and position_bias.shape[0] != query.shape[0]:
        position_bias = position_bias.expand(query.shape[0], -1, -1, -1)
    return flex_attention_forward(module, query, key, value, attention_mask, position_bias=position_bias, **kwargs)


def apply(model, speed: SpeedSpec) -> None:
    """Patch ``model`` (a T5, or a peft model around one) in place, per ``speed``."""
    if speed.fused_rms_norm:
        norms = [m for m in model.modules() if type(m).__name__ == "T5LayerNorm"]
        if not hasattr(torch.nn.functional, "rms_norm"):
            log.warning("speed.fused_rms_norm: torch %s has no rms_norm; T5's layer norm stays", torch.__version__)
        else:
            for norm in norms:
                norm.forward = types.MethodType(rms_norm_forward, norm)
            log.info("speed.fused_rms_norm: %d T5 layer norms through torch.nn.functional.rms_norm", len(norms))
    if speed.compile:
        compile_blocks(model)


def rms_norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """T5LayerNorm.forward as one kernel: the mean square in fp32, no mean subtracted, no bias,
    and the result in the weight's dtype when that is half precision (as T5's own code)."""
    normed = torch.nn.functional.rms_norm(hidden_states.float(), (hidden_states.shape[-1],),
                                          eps=self.variance_epsilon)
    if self.weight.dtype in (torch.float16, torch.bfloat16):
        normed = normed.to(self.weight.dtype)
    return self.weight * normed


def compile_blocks(model) -> int:
    """``torch.compile`` each T5 block in place (regional compilation: the blocks share their
    code, so one graph per kind of block serves every layer; start-up stays in seconds where a
    whole-model compile takes minutes). Where dynamo cannot compile a graph, that graph runs
    eagerly (``suppress_errors``): slower, never failed. Returns the blocks compiled."""
    import torch._dynamo

    blocks = [m for m in model.modules() if type(m).__name__ == "T5Block"]
    if not hasattr(torch.nn.Module, "compile"):
        log.warning("speed.compile: torch %s cannot compile modules in place; running eagerly", torch.__version__)
        return 0
    torch._dynamo.config.suppress_errors = True
    for block in blocks:
        block.compile()
    log.info("speed.compile: %d T5 blocks compiled (regional)", len(blocks))
    return len(blocks)
