"""Automatic retries: a point that failed for a cause its spec's ``retry.on`` lists is
resubmitted, at most ``retry.max`` times, into the same run folder and MLflow run; the job
resumes from its newest complete checkpoint.

The launcher resubmits, not the job: the local driver as soon as its points have ended, SLURM
and ctl points at the next ``status`` or ``sync``. A job cannot requeue itself reliably: a node
that died runs nothing, and the scheduler's verdict (NODE_FAIL, TIMEOUT) exists only after the
job. A retry after ``node_fail`` or ``nccl`` excludes the nodes the failed job ran on (sbatch
``--exclude``, SLURM only). A retry after ``oom_gpu`` re-plans the point (``replan``): half the
micro batch with twice the accumulation (the same global batch; it resumes from its checkpoint),
or the next rung of the ZeRO ladder (it starts over: another stage cannot load the checkpoint).

What a re-plan sets is kept in the point's record (``REPLANNED``, dotted keys) and applied at
every later submission of the point (``respec``); the point keeps its hash: it is the same
experiment, and keys that say where it runs (``slurm``) are not hashed anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

from workflow.failures import Cause
from workflow.launch import config
from workflow.launch.manifest import Manifest, PointRecord
from workflow.launch.sweep import Point
from workflow.spec import JobSpec
from workflow.states import TERMINAL_FAILED
from workflow.tree import set_path

REPLANNED = "replanned"      # record.extra: {dotted key: value} that re-plans set, applied at each submission
RETRIES = "auto_retries"     # record.extra: automatic resubmissions so far (bounded by retry.max)
NODES = "nodes"              # record.extra: the nodes the point's last job ran on (sacct NodeList)
CHANGE = "change"            # record.extra: what the last retry changed, in words (the node tags it)
EXCLUDING = (Cause.NODE_FAIL, Cause.NCCL)


@dataclass(frozen=True)
class Retry:
    point: Point        # as it will run: re-planned, with its excluded nodes
    settings: dict      # what this retry sets (dotted keys), kept in the record
    change: str         # the change in words, "" when none (the same configuration again)
    resumes: bool       # the new configuration can load the newest checkpoint


def respec(point: Point, record: PointRecord | None) -> Point:
    """The point with what its earlier re-plans set (none: the point itself)."""
    settings = record.extra.get(REPLANNED) if record else None
    return replace(point, spec=with_settings(point.spec, settings)) if settings else point


def with_settings(spec: JobSpec, settings: dict[str, Any]) -> JobSpec:
    """The spec with dotted keys set, validated again as a spec file's would be."""
    data = spec.model_dump(mode="json")
    for key, value in settings.items():
        set_path(data, key, value)
    return config.validate(data, "<retry>")


def due(points: Iterable[Point], manifest: Manifest) -> tuple[list[Retry], list[str]]:
    """The points whose failure their ``retry`` block covers, with retries left, each as it will
    run; and, in words, the covered ones that are not retried (retries used up, nothing smaller
    to try)."""
    retries, notes = [], []
    for point in points:
        record, rule = manifest.points.get(point.hash), point.spec.retry
        if not rule or record is None or record.state not in TERMINAL_FAILED or record.cause not in rule.on:
            continue
        used = record.extra.get(RETRIES, 0)
        if used >= rule.max:
            notes.append(f"{record.name}: failed ({record.cause}) after {used} automatic "
                         f"retr{'y' if used == 1 else 'ies'} (retry.max {rule.max}): not retried")
            continue
        current = respec(point, record)
        settings, change, resumes = {}, "", True
        if record.cause == Cause.OOM_GPU:
            found = replan(current.spec, record.rundir.read_state().get("gpu_need_gb"))
            if found is None:
                notes.append(f"{record.name}: out of GPU memory with micro batch 1 at the last rung of the "
                             "ZeRO ladder (parameter offload): not retried; add GPUs or nodes")
                continue
            settings, change, resumes = found
        if record.cause in EXCLUDING and record.extra.get(NODES) and current.spec.backend == "slurm":
            settings["slurm.sbatch"] = {**current.spec.slurm.sbatch,
                                        "exclude": excluded(current.spec, record.extra[NODES])}
            change = ", ".join(c for c in (change, f"excluding {settings['slurm.sbatch']['exclude']}") if c)
        spec = with_settings(current.spec, settings) if settings else current.spec
        retries.append(Retry(replace(current, spec=spec), settings, change, resumes))
    return retries, notes


def excluded(spec: JobSpec, nodes: str) -> str:
    """The nodes a retry leaves out: those excluded before and those the failed job ran on."""
    before = str(spec.slurm.sbatch.get("exclude") or "")
    return ",".join(dict.fromkeys(n for n in (*before.split(","), *nodes.split(",")) if n))


def replan(spec: JobSpec, need_gb: float | None = None) -> tuple[dict, str, bool] | None:
    """After an out-of-GPU-memory failure: what to set next, in words, and whether the job can
    resume from its checkpoint. Half the micro batch with twice the accumulation first (the same
    global batch, the same checkpoint layout), then the next rung of the ladder that
    ``deepspeed.stage: auto`` walks. Where the memory plan knows the model and GPU, the first of
    these that fits is taken: with ``need_gb`` (what the failed job measured it needed, at least)
    every estimate is scaled by how far the failed one fell short and must fit the budget of
    ``auto``; without it, an estimate must be under the failed one's by AUTO_MARGIN (the failed
    one fitted on paper: the plan was short by at least the difference). None: nothing smaller."""
    from workflow.launch import memory

    options = []
    train = spec.train
    if train.train_batch_size > 1 and train.train_batch_size % 2 == 0:
        options.append(({"train.train_batch_size": train.train_batch_size // 2,
                         "train.gradient_accumulation_steps": train.gradient_accumulation_steps * 2}, True))
    rung = current_rung(spec)
    for stage, off_opt, off_par in memory.AUTO_LADDER[memory.AUTO_LADDER.index(rung) + 1:] if rung else ():
        options.append(({"deepspeed.enabled": True, "deepspeed.stage": stage,
                         "deepspeed.offload_optimizer": "cpu" if off_opt else "none",
                         "deepspeed.offload_param": "cpu" if off_par else "none"}, False))
    if not options:
        return None
    failed = memory.estimate(spec)
    chosen, note = options[0], ""
    if failed is not None:
        def total(option: tuple[dict, bool]) -> float:
            return memory.estimate(with_settings(spec, option[0])).chosen.total_gb

        if need_gb and failed.gpu_mem_gb and need_gb > failed.chosen.total_gb:
            scale = need_gb / failed.chosen.total_gb
            budget = failed.gpu_mem_gb * memory.HEADROOM * memory.AUTO_MARGIN
            smaller = [o for o in options if total(o) * scale <= budget]
            note = (f" (it needed at least {need_gb:.1f} GiB where the plan said {failed.chosen.total_gb:.1f}: "
                    f"estimates scaled by {scale:.2f})")
        else:
            smaller = [o for o in options if total(o) <= failed.chosen.total_gb * memory.AUTO_MARGIN]
        chosen = smaller[0] if smaller else options[-1]
    settings, resumes = chosen
    return settings, describe(spec, settings) + note, resumes


def current_rung(spec: JobSpec) -> tuple[int, bool, bool] | None:
    """The spec's place on ``memory.AUTO_LADDER`` (stage auto: the rung the plan chose)."""
    from workflow.launch import memory

    ds = spec.deepspeed
    if ds.enabled and ds.stage == "auto":
        choice = memory.auto_stage(spec)
        if choice is None:
            return None
        ds = ds.model_copy(update=choice[0])
    rung = (ds.stage if ds.enabled else 0, ds.offload_optimizer != "none", ds.offload_param != "none")
    return rung if rung in memory.AUTO_LADDER else None


def describe(spec: JobSpec, settings: dict) -> str:
    """``train.train_batch_size 8 -> 4, train.gradient_accumulation_steps 1 -> 2``."""
    return ", ".join(f"{key} {spec.get(key)} -> {value}" for key, value in settings.items()
                     if spec.get(key) != value)
