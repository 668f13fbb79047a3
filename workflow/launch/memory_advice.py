"""What to change when a point's memory plan does not fit, with the planner's figures.

GPU memory: another ZeRO stage, offload or node count (``Estimate.suggestion``), and, when the
activations dominate, the knobs that shrink them (more nodes never do): a smaller micro batch
with more accumulation (the same global batch), gradient checkpointing, a shorter source.
Host memory: ``resources.mem_gb`` against what the setup keeps in a node's RAM.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from workflow.errors import Problem
from workflow.launch.memory import HEADROOM, PROCESS_HOST_GB, Estimate, Option, train_activations_gb

if TYPE_CHECKING:  # annotations only: status imports the console, which imports this module
    from workflow.spec import JobSpec, TrainSpec

FORCE = "use --force to submit anyway"
SHORTEST_SOURCE = 32  # max_source_length is halved down to this, no further


def gpu_problem(file: str, spec: JobSpec, est: Estimate) -> Problem:
    """The chosen setup is above the GPU memory: the figures, and what would fit."""
    chosen = est.chosen
    return Problem(file, "deepspeed", f"at most {est.gpu_mem_gb * HEADROOM:.1f} GiB per GPU "
                   f"({spec.resources.gpu_type or 'gpu_mem_gb'})",
                   f"{chosen.total_gb:.1f} GiB for {chosen.label} "
                   f"(model states {chosen.gpu_gb:.1f} + activations {est.activations_gb:.1f})",
                   f"{gpu_hint(spec, est)}; {FORCE}")


def gpu_hint(spec: JobSpec, est: Estimate) -> str:
    """A setup that fits, and the activation knobs when no setup fits or activations dominate."""
    advice = []
    if est.suggestion:
        advice.append(f"{est.suggestion.label} fits ({est.suggestion.total_gb:.1f} GiB/GPU)")
    if est.suggestion is None or est.activations_gb >= est.chosen.gpu_gb:
        advice.append(f"activations ({est.activations_gb:.1f} GiB/GPU) do not shrink with more nodes: "
                      + "; ".join(activation_knobs(spec, est)))
    return "; or ".join(advice)


def activation_knobs(spec: JobSpec, est: Estimate) -> list[str]:
    """Each knob that shrinks the activations, with what the estimate gives for it. The room is
    what the chosen setup's model states leave on a GPU (or, when they alone do not fit, the
    leanest setup's)."""
    train, cfg, usable = spec.train, est.params.config, est.gpu_mem_gb * HEADROOM
    setup = est.chosen if est.chosen.gpu_gb < usable else min(est.options, key=lambda o: o.gpu_gb)
    room = usable - setup.gpu_gb
    where = "" if setup == est.chosen else f" (with {setup.short})"
    knobs = [micro_batch_knob(train, est.activations_gb, room) + where]
    if not train.gradient_checkpointing:
        kept = train_activations_gb(cfg, train, checkpointing=True)
        knob = f"train.gradient_checkpointing=true: activations {kept:.1f} GiB, {est.activations_gb - kept:.1f} less"
        if kept > room:  # not enough alone: the micro batch it allows
            knob += "; with it, " + micro_batch_knob(train, kept, room)
        knobs.append(knob)
    shorter = source_length_knob(cfg, train, room)
    if shorter:
        knobs.append(shorter)
    return knobs


def micro_batch_knob(train: TrainSpec, activations: float, room: float) -> str:
    """The largest micro batch whose activations fit ``room`` and that divides the samples of one
    optimizer step, so that accumulation keeps the global batch."""
    micro, accumulation = train.train_batch_size, train.gradient_accumulation_steps
    per_sample = activations / micro
    most = min(micro, int(room // per_sample)) if room > 0 else 0
    if most < 1:
        return (f"even train.train_batch_size=1 needs {per_sample:.1f} GiB of activations, "
                f"with {max(room, 0):.1f} GiB left")
    samples = micro * accumulation
    size = max(b for b in range(1, most + 1) if samples % b == 0)
    return (f"train.train_batch_size={size} with train.gradient_accumulation_steps={samples // size} "
            f"(the same global batch): activations {size * per_sample:.1f} of {room:.1f} GiB left")


def source_length_knob(cfg: dict, train: TrainSpec, room: float) -> str | None:
    """The longest halving of max_source_length whose activations fit ``room``."""
    length = train.max_source_length // 2
    while length >= SHORTEST_SOURCE:
        activations = train_activations_gb(cfg, train, src_len=length)
        if activations <= room:
            return f"train.max_source_length={length}: activations {activations:.1f} GiB (longer inputs are cut)"
        length //= 2
    return None


def host_problem(file: str, spec: JobSpec, est: Estimate) -> Problem:
    """The chosen setup keeps more in a node's RAM than ``resources.mem_gb``: the figures and the fixes."""
    chosen, tasks = est.chosen, spec.resources.tasks
    states = chosen.host_gb - tasks * PROCESS_HOST_GB
    fixes = [f"raise resources.mem_gb to {math.ceil(chosen.host_gb)}", *host_alternatives(est, tasks), FORCE]
    return Problem(file, "resources.mem_gb",
                   f"at least {chosen.host_gb:.1f} GiB of host memory per node for {chosen.label} (model states "
                   f"{states:.1f} + {tasks} process(es) x {PROCESS_HOST_GB:g})",
                   f"{est.host_mem_gb:g} GiB", "; or ".join(fixes))


def host_alternatives(est: Estimate, tasks: int) -> list[str]:
    """More nodes, where they split the offloaded states (ZeRO-3), and a setup that fits."""
    chosen, found = est.chosen, []
    room = est.host_mem_gb - tasks * PROCESS_HOST_GB
    if chosen.stage == 3 and chosen.offload_optimizer and room > 0:
        states = (chosen.host_gb - tasks * PROCESS_HOST_GB) * chosen.nodes  # ZeRO-3 offload: 1/nodes a node
        nodes = math.ceil(states / room)
        found.append(f"resources.nodes={nodes} splits ZeRO-3's offloaded states: "
                     f"{states / nodes + tasks * PROCESS_HOST_GB:.1f} GiB a node")
    if est.suggestion:
        found.append(f"{est.suggestion.label} fits ({describe(est.suggestion)})")
    return found


def describe(option: Option) -> str:
    return f"{option.total_gb:.1f} GiB/GPU, host {option.host_gb:.1f} GiB a node"
