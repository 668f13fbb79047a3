"""Memory planning without loading a model or importing deepspeed.

- Parameter counts come from a T5 ``config.json`` (or a preset for flan-t5-small..xxl).
- Model-state memory uses DeepSpeed's cold estimator formulas (``estimate_zero2/3_model_states_
  mem_needs`` in deepspeed.runtime.zero), reproduced here so ``plan`` stays import-light; a test
  and ``bench/`` compare them with DeepSpeed's own functions.
- Activations: Korthikanti et al. 2022 ("Reducing activation recomputation"), per transformer
  layer without recomputation: s*b*h*(34 + 5*a*s/h) bytes at 16-bit; decoder layers add a
  cross-attention block. It is an estimate (it ignores the logits and framework buffers).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from workflow.jsonio import read_json

if TYPE_CHECKING:  # annotations only: status imports this module and never loads pydantic
    from workflow.spec import JobSpec, LoraSpec

GIB = 2 ** 30         # every figure here is in GiB
BUFFER_FACTOR = 1.5  # DeepSpeed's additional_buffer_factor default
HEADROOM = 0.95      # plan against 95% of the card (CUDA context, fragmentation)
# Host memory of each process besides the model states: Python, torch, CUDA's host side, the
# tokenizer and the eval records. The training rows are memory-mapped and shared by the ranks
# (workflow/node/tokenized.py). An allowance, not a measurement.
PROCESS_HOST_GB = 2.0

# Public flan-t5 configs (d_model, d_ff, d_kv, num_heads, num_layers, vocab; gated-gelu, untied head).
PRESETS = {
    "flan-t5-small": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8),
    "flan-t5-base": dict(d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
    "flan-t5-large": dict(d_model=1024, d_ff=2816, d_kv=64, num_heads=16, num_layers=24, num_decoder_layers=24),
    "flan-t5-xl": dict(d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24),
    "flan-t5-xxl": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, num_decoder_layers=24),
}
PRESET_COMMON = dict(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                     relative_attention_num_buckets=32)

GPU_MEMORY_GB = {"A100-80GB": 80, "A100-40GB": 40, "A100": 80, "H100-80GB": 80, "H100": 80, "H200": 141,
                 "V100-32GB": 32, "V100-16GB": 16, "A10G": 24, "L4": 24, "L40S": 48, "A6000": 48}


@dataclass(frozen=True)
class ModelSize:
    total: int
    largest_layer: int
    config: dict


def t5_config(source: str) -> dict | None:
    """A local config.json, or the preset whose name ends the hub id (google/flan-t5-xxl)."""
    path = Path(source) / "config.json"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = None
    found = _t5_config(source, mtime)
    return dict(found) if found is not None else None


@lru_cache(maxsize=64)
def _t5_config(source: str, mtime: int | None) -> dict | None:
    """Read once per file version: every point of a sweep usually shares one model."""
    if mtime is not None:
        return read_json(Path(source) / "config.json")
    name = source.rstrip("/").rsplit("/", 1)[-1].lower()
    return {**PRESET_COMMON, **PRESETS[name]} if name in PRESETS else None


def t5_params(cfg: dict) -> ModelSize:
    """Exact T5 parameter count from its config (matches sum(p.numel()) of the HF model)."""
    d, ff, heads, kv = cfg["d_model"], cfg["d_ff"], cfg["num_heads"], cfg["d_kv"]
    enc, dec = cfg["num_layers"], cfg.get("num_decoder_layers") or cfg["num_layers"]
    gated = str(cfg.get("feed_forward_proj", "relu")).startswith("gated")
    attention = 4 * d * heads * kv
    mlp = (3 if gated else 2) * d * ff
    bias = cfg.get("relative_attention_num_buckets", 32) * heads
    embedding = cfg["vocab_size"] * d
    head = 0 if cfg.get("tie_word_embeddings", True) else embedding
    total = (enc * (attention + mlp + 2 * d) + dec * (2 * attention + mlp + 3 * d)
             + 2 * bias + 2 * d + embedding + head)
    return ModelSize(total, max(embedding, mlp, attention), cfg)


def lora_params(cfg: dict, lora: LoraSpec) -> int:
    """Trainable LoRA parameters: r x (fan_in + fan_out) for each adapted module instance."""
    d, ff, inner, r = cfg["d_model"], cfg["d_ff"], cfg["num_heads"] * cfg["d_kv"], lora.r
    enc, dec = cfg["num_layers"], cfg.get("num_decoder_layers") or cfg["num_layers"]
    per = {"q": d + inner, "k": d + inner, "v": d + inner, "o": inner + d, "wi": d + ff, "wi_0": d + ff,
           "wi_1": d + ff, "wo": ff + d}
    attention = {"q", "k", "v", "o"}
    total = 0
    for name in lora.target_modules:
        count = (enc + 2 * dec) if name in attention else (enc + dec)
        total += r * per.get(name, 0) * count
    return total


# Bytes per frozen weight of the quantised linear layers (QLoRA). NF4 stores 4 bits plus one 8-bit
# absmax per block of 64 (double quantisation); LLM.int8 stores 8 bits plus a row scale.
QUANTIZED_BYTES = {"4bit": 0.5 + 1 / 64, "8bit": 1.0}


def frozen_base_bytes(params: ModelSize, quantize: str = "none") -> float:
    """Bytes of the frozen base under LoRA: 16-bit weights, or quantised linear layers with the
    embeddings (and an untied head, which bitsandbytes leaves alone) kept in 16-bit."""
    if quantize == "none":
        return 2.0 * params.total
    cfg = params.config
    embeddings = cfg["vocab_size"] * cfg["d_model"] * (1 if cfg.get("tie_word_embeddings", True) else 2)
    return 2.0 * embeddings + QUANTIZED_BYTES[quantize] * (params.total - embeddings)


def model_states_gb(params: ModelSize, stage: int, gpus_per_node: int, nodes: int,
                    offload_optimizer: bool, offload_param: bool, trainable: int | None = None,
                    quantize: str = "none") -> tuple[float, float]:
    """(GiB per GPU, host GiB per node) for model states: DeepSpeed's cold formulas.
    With LoRA (``trainable`` set), the formulas apply to the adapters and the frozen base adds
    its 16-bit (or quantised) weights, sharded under ZeRO-3."""
    if trainable is not None:
        gpu, host = model_states_gb(ModelSize(trainable, params.largest_layer, params.config), stage, gpus_per_node,
                                    nodes, offload_optimizer, offload_param)
        frozen = frozen_base_bytes(params, quantize) / (gpus_per_node * nodes if stage == 3 else 1)
        return gpu + (0 if offload_param else frozen / GIB), host + (frozen / GIB if offload_param else 0)
    p, gpus = params.total, gpus_per_node * nodes
    if stage == 3:
        largest = 4 * params.largest_layer
        if offload_optimizer and offload_param:
            gpu, cpu = largest, p * 18 / nodes * BUFFER_FACTOR
        elif offload_optimizer:
            gpu, cpu = largest + int(2 * p / gpus), p * 16 / nodes * BUFFER_FACTOR
        else:
            gpu, cpu = largest + int(18 * p / gpus), params.largest_layer * 4 * gpus_per_node * BUFFER_FACTOR
    elif stage == 2:
        if offload_optimizer:
            gpu, cpu = 2 * p, p * max(4 * gpus, 16) * BUFFER_FACTOR
        else:
            gpu, cpu = 2 * p + int(18 * p / gpus), p * 4 * gpus_per_node * BUFFER_FACTOR
    else:  # plain data parallel: 16-bit params and grads, fp32 master copy and Adam states on every GPU
        gpu, cpu = 18 * p, p * 4 * gpus_per_node * BUFFER_FACTOR
    return int(gpu) / GIB, int(cpu) / GIB


def train_activations_gb(cfg: dict, train, micro_batch: int | None = None, src_len: int | None = None,
                         checkpointing: bool | None = None) -> float:
    """Activations per GPU for the spec's ``train`` block, or for the micro batch, source length or
    checkpointing given instead (what the hints try)."""
    checkpointing = train.gradient_checkpointing if checkpointing is None else checkpointing
    return (checkpointed_activations_gb if checkpointing else activations_gb)(
        cfg, micro_batch or train.train_batch_size, src_len or train.max_source_length, train.max_target_length,
        train.precision)


def activations_gb(cfg: dict, micro_batch: int, src_len: int, tgt_len: int, precision: str,
                   lora: bool = False) -> float:
    """Korthikanti et al. per-layer activations, encoder at src_len, decoder at tgt_len."""
    d, heads = cfg["d_model"], cfg["num_heads"]
    enc, dec = cfg["num_layers"], cfg.get("num_decoder_layers") or cfg["num_layers"]
    width = 1 if precision == "fp32" else 0.5  # the formula counts 16-bit bytes; fp32 doubles it

    def layer(s: int, kv_len: int) -> float:
        return s * micro_batch * d * (34 + 5 * heads * kv_len / d)

    total = enc * layer(src_len, src_len) + dec * (layer(tgt_len, tgt_len) + layer(tgt_len, src_len) * 0.5)
    return total * 2 * width / GIB


def gpu_memory_gb(gpu_type: str | None) -> float | None:
    if not gpu_type:
        return None
    key = gpu_type.upper().replace(" ", "-")
    for name, size in GPU_MEMORY_GB.items():
        if name.upper() == key:
            return float(size)
    return None


def checkpointed_activations_gb(cfg: dict, micro_batch: int, src_len: int, tgt_len: int, precision: str) -> float:
    """With gradient checkpointing only each layer's input is kept, plus one layer's full set."""
    d = cfg["d_model"]
    enc, dec = cfg["num_layers"], cfg.get("num_decoder_layers") or cfg["num_layers"]
    width = 2 if precision == "fp32" else 1
    inputs = (enc * src_len + dec * tgt_len) * micro_batch * d * 2 * width
    one = activations_gb({**cfg, "num_layers": 1, "num_decoder_layers": 1}, micro_batch, src_len, tgt_len, precision)
    return inputs / GIB + one


@dataclass(frozen=True)
class Option:
    stage: int
    offload_optimizer: bool
    offload_param: bool
    nodes: int
    gpu_gb: float      # model states per GPU
    host_gb: float     # host memory per node: model states (offloaded, or loading) + PROCESS_HOST_GB a process
    total_gb: float    # model states + activations per GPU

    @property
    def label(self) -> str:
        off = "+".join(x for x, on in (("optimizer", self.offload_optimizer), ("params", self.offload_param)) if on)
        name = f"ZeRO-{self.stage}" if self.stage else "no ZeRO"
        return name + (f", offload {off}" if off else "") + f", {self.nodes} node(s)"

    @property
    def short(self) -> str:
        """The setup in a table cell: ZeRO-3 +opt+par (offloads of optimizer and params)."""
        off = "".join(x for x, on in (("+opt", self.offload_optimizer), ("+par", self.offload_param)) if on)
        return (f"ZeRO-{self.stage}" if self.stage else "no ZeRO") + (f" {off}" if off else "")


@dataclass(frozen=True)
class Estimate:
    model: str
    params: ModelSize
    gpus_per_node: int
    gpu_mem_gb: float | None
    activations_gb: float
    chosen: Option
    options: tuple[Option, ...]
    suggestion: Option | None  # the first setup of the ladder that fits, when the chosen one does not
    host_mem_gb: float | None = None  # the host memory a node has (host_limit_gb); None: unchecked

    @property
    def gpu_fits(self) -> bool | None:
        return None if self.gpu_mem_gb is None else fits(self.chosen, self.gpu_mem_gb)

    @property
    def host_fits(self) -> bool | None:
        return None if self.host_mem_gb is None else host_fits(self.chosen, self.host_mem_gb)

    @property
    def fits(self) -> bool | None:
        """False when the GPUs or the host memory are too small; None when one of them is unknown."""
        checks = (self.gpu_fits, self.host_fits)
        return False if False in checks else (None if None in checks else True)


def fits(option: Option, gpu_mem_gb: float) -> bool:
    """Whether the option fits the GPUs (the host memory is ``host_fits``)."""
    return option.total_gb <= gpu_mem_gb * HEADROOM


def host_fits(option: Option, host_mem_gb: float) -> bool:
    return option.host_gb <= host_mem_gb


def fits_all(option: Option, gpu_mem_gb: float | None, host_mem_gb: float | None) -> bool:
    """Fits the GPUs and the host memory, each where it is known."""
    return ((gpu_mem_gb is None or fits(option, gpu_mem_gb))
            and (host_mem_gb is None or host_fits(option, host_mem_gb)))


def host_limit_gb(spec: JobSpec) -> float | None:
    """``resources.mem_gb`` where it bounds the job: SLURM requests it (its default too), and a
    spec that sets it says what a node has. Elsewhere None: host memory is unchecked."""
    res = spec.resources
    return res.mem_gb if spec.backend == "slurm" or "mem_gb" in res.model_fields_set else None


def estimate(spec: JobSpec) -> Estimate | None:
    """Per-GPU and per-node host memory for the spec's choice and every ZeRO/offload alternative;
    None without a known T5 config or without GPUs."""
    res, train, ds, lora = spec.resources, spec.train, spec.deepspeed, spec.lora
    if res.on_cpu:
        return None
    cfg = t5_config(spec.model_source)
    if cfg is None:
        return None
    size = t5_params(cfg)
    acts = train_activations_gb(cfg, train)
    gpus, processes = res.gpus_per_node, res.tasks * PROCESS_HOST_GB
    trainable = lora_params(cfg, lora) if lora else None
    quantize = lora.quantize if lora else "none"

    def option(stage: int, off_opt: bool, off_par: bool, nodes: int) -> Option:
        gpu, host = model_states_gb(size, stage, gpus, nodes, off_opt, off_par, trainable, quantize)
        return Option(stage, off_opt, off_par, nodes, gpu, host + processes, gpu + acts)

    stage = ds.stage if ds.enabled else 0
    chosen = option(stage, ds.offload_optimizer != "none", ds.offload_param != "none", res.nodes)
    grid = [(0, False, False), (2, False, False), (3, False, False), (2, True, False), (3, True, False),
            (3, True, True)]
    options = tuple(option(s, o, p, res.nodes) for s, o, p in grid)
    mem, host_mem = gpu_size_gb(spec), host_limit_gb(spec)
    suggestion = None
    if not fits_all(chosen, mem, host_mem):
        ladder = [option(s, o, p, n) for n in (res.nodes, res.nodes * 2, res.nodes * 4) for s, o, p in grid]
        suggestion = next((o for o in ladder if fits_all(o, mem, host_mem)), None)
    return Estimate(spec.model_source, size, gpus, mem, acts, chosen, options, suggestion, host_mem)


def gpu_size_gb(spec: JobSpec) -> float | None:
    return spec.resources.gpu_mem_gb or gpu_memory_gb(spec.resources.gpu_type)


# deepspeed.stage auto, fastest first (measured on one GPU: docs/benchmarks.md, "GPU
# throughput"): plain data parallel, then ZeRO-2, ZeRO-3, and the offloads, which trade GPU
# memory for PCIe traffic (and host memory).
AUTO_LADDER = ((0, False, False), (2, False, False), (3, False, False), (3, True, False), (3, True, True))
# auto keeps this share of the usable memory free: the measured ZeRO-2 peak of an xl model was
# above its estimate (docs/benchmarks.md, "GPU throughput"; ZeRO-3 and LoRA were close to theirs).
AUTO_MARGIN = 0.9


def auto_stage(spec: JobSpec) -> tuple[dict, str] | None:
    """For ``deepspeed.stage: auto``: the first rung of AUTO_LADDER whose estimate fits the GPU
    and the host memory (where it is known), as deepspeed block values, with the reason in words.
    The last rung when none fits (the memory check then refuses it with a suggestion). None when
    the model or GPU size is unknown."""
    mem = gpu_size_gb(spec)
    if mem is None or t5_config(spec.model_source) is None:
        return None
    budget = mem * HEADROOM * AUTO_MARGIN
    host_bound = []  # rungs that fit the GPUs but not the host memory
    for stage, off_opt, off_par in AUTO_LADDER:
        choice = {"enabled": stage != 0, "stage": stage, "offload_optimizer": "cpu" if off_opt else "none",
                  "offload_param": "cpu" if off_par else "none"}
        est = estimate(spec.model_copy(update={"deepspeed": spec.deepspeed.model_copy(update=choice)}))
        if est.chosen.total_gb <= budget and est.host_fits is not False:
            break
        if est.chosen.total_gb <= budget:
            host_bound.append(est.chosen.short)
    return choice, auto_reason(est, budget, host_bound)


def auto_reason(est: Estimate, budget: float, host_bound: list[str]) -> str:
    """What auto chose, in words: its GPU memory against the budget, and its host memory."""
    chosen, mem = est.chosen, est.gpu_mem_gb
    verdict = "within" if chosen.total_gb <= budget else "above"
    text = (f"deepspeed.stage auto -> {chosen.label.rsplit(',', 1)[0]}: {chosen.total_gb:.1f} GiB/GPU, "
            f"{verdict} {AUTO_MARGIN:.0%} of the usable {mem * HEADROOM:.1f} of {mem:.0f} GiB")
    if est.host_mem_gb is not None:
        text += (f"; host {chosen.host_gb:.1f} of {est.host_mem_gb:g} GiB a node" if est.host_fits else
                 f"; host {chosen.host_gb:.1f} GiB a node, above resources.mem_gb {est.host_mem_gb:g}")
        if host_bound:
            text += f" ({', '.join(host_bound)}: above resources.mem_gb)"
    return text
