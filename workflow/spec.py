"""The job spec: one pydantic model, every default and its documentation in one place.

``python launch.py schema`` prints the reference from the fields, and the README's spec reference
is generated from them (``reference_markdown``; a test keeps the two equal). Derived values
(tasks per node, world size, samples per step, model source, final model folder, the point
hash) are properties and methods of the models, so no other module re-derives them. Beside the
schema: which keys the point hash covers (``workflow.point_hash``), how pydantic's errors become
Problems (``workflow.spec_errors``), and how a sweep's points share blocks
(``workflow.launch.sweep_blocks``). Blocks:

- top level: task, model, data, backend, output
- ``train``: optimisation and checkpointing
- ``generate``: sampling on the eval split after training
- ``resources``: what one point asks of the cluster (units in the names)
- ``tracking``: MLflow experiment and store
- ``deepspeed``: ZeRO settings (off by default)
- ``local`` / ``slurm`` / ``ctl``: backend-only settings, passed through to that backend
- ``retry``: which failures resubmit themselves (off by default; never hashed)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, Union, get_args

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from workflow import point_hash as hash_rules
from workflow.failures import Cause, injected_fault
from workflow.metrics import AT_EVAL, GENERATION, lookup, lower_is_better
from workflow.paths import models_dir
from workflow.tasks import TASKS, Task
from workflow.tree import flatten, nest

if TYPE_CHECKING:
    from workflow.rundir import RunDir

SPEC_ERROR = "spec"  # the error type of the validators below; its context names key, expected and given
# (workflow.spec_errors reads it)


def fail(key: str, expected: str, given: Any, hint: str | None = None) -> PydanticCustomError:
    """A validator error that names its key path, what was expected and what was given (and a
    hint after it). In a field validator ``key`` is "": pydantic's location names the field."""
    shown = repr(given) + (f" ({hint})" if hint else "")
    return PydanticCustomError(SPEC_ERROR, "{key}: expected {expected}, got {given}",
                               {"key": key, "expected": expected, "given": shown})


def close_match(word: Any, options) -> str | None:
    """A "did you mean" hint for a value among ``options``, or None when none is close."""
    import difflib  # only an error needs it

    found = difflib.get_close_matches(str(word), sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{found[0]}'?" if found else None


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


LR_SCHEDULERS = ("linear", "cosine", "constant_with_warmup")  # transformers' lr_scheduler_type names


class TrainSpec(Block):
    learning_rate: PositiveFloat = Field(3e-4, description="Peak learning rate (AdamW).")
    warmup_steps: NonNegativeInt = Field(0, description="Linear warm-up steps.")
    lr_scheduler: Literal[LR_SCHEDULERS] = Field(
        "linear", description="Learning rate after the warm-up: linear (decays to 0), cosine (decays to 0) or "
        "constant_with_warmup.")
    max_steps: Optional[PositiveInt] = Field(
        1000, description="Optimizer steps to train for (unset when num_epochs is given).")
    num_epochs: Optional[PositiveFloat] = Field(
        None, description="Passes over the train split, instead of max_steps (give one of the two; 1.5 is allowed).")
    train_batch_size: PositiveInt = Field(32, description="Micro batch size per device.")
    eval_batch_size: PositiveInt = Field(64, description="Eval and generation batch size per device.")
    gradient_accumulation_steps: PositiveInt = Field(1, description="Micro batches per optimizer step.")
    global_batch_size: Optional[PositiveInt] = Field(
        None, description="Checked: train_batch_size x gradient_accumulation_steps x world size must equal it.")
    save_steps: PositiveInt = Field(500, description="Checkpoint every N steps.")
    save_total_limit: PositiveInt = Field(2, description="Checkpoints kept on disk (oldest rotated out).")
    eval_steps: PositiveInt = Field(200, description="Compute eval loss every N steps.")
    logging_steps: PositiveInt = Field(20, description="Log loss and learning rate every N steps.")
    seed: int = Field(42, description="Seed for data order and initialisation.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Training precision.")
    max_source_length: PositiveInt = Field(256, description="Prompt tokens kept (longer ones are truncated and counted).")
    max_target_length: PositiveInt = Field(128, description="Completion tokens kept (longer ones are truncated and counted).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward (less memory).")
    do_train: bool = Field(True, description="False: evaluate the initial model only.")
    save: bool = Field(True, description="False: write no checkpoint and no final model (a throughput probe, an "
                       "eval-only sweep); the eval runs on the model in memory, and nothing is left to resume from.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="seq2seq: label smoothing of the token loss, in [0, 1) (eval_loss includes it).")
    load_best_at_end: bool = Field(
        False, description="Load the checkpoint with the best best_metric when training ends: the final model and "
        "its eval are that checkpoint's (save_steps must be a multiple of eval_steps).")
    best_metric: str = Field("eval_loss", description="What load_best_at_end chooses by: a metric computed at "
                             "every evaluation (eval_loss).")

    @field_validator("lr_scheduler", mode="before")
    @classmethod
    def _known_scheduler(cls, value: Any) -> Any:
        if value not in LR_SCHEDULERS:
            raise fail("", "one of " + ", ".join(LR_SCHEDULERS), value, close_match(value, LR_SCHEDULERS))
        return value

    @field_validator("best_metric")
    @classmethod
    def _metric_at_eval(cls, name: str) -> str:
        if name not in AT_EVAL:
            known = lookup(name)
            hint = (f"{name} is computed once, after training" if known else close_match(name, AT_EVAL))
            raise fail("", "a metric computed at every evaluation while training: " + ", ".join(AT_EVAL), name, hint)
        return name

    @model_validator(mode="after")
    def _duration(self) -> "TrainSpec":
        """One of max_steps and num_epochs: max_steps keeps its default unless num_epochs is given."""
        if self.num_epochs is None:
            if self.max_steps is None:
                raise fail("max_steps", "max_steps or num_epochs (one of them)", None)
        elif "max_steps" in self.model_fields_set and self.max_steps is not None:
            raise fail("num_epochs", "one of train.max_steps and train.num_epochs (set the other to null)",
                       f"both (max_steps={self.max_steps}, num_epochs={self.num_epochs})")
        else:
            self.max_steps = None
        return self

    @model_validator(mode="after")
    def _saved_best(self) -> "TrainSpec":
        if self.load_best_at_end and not self.save:
            raise fail("save", "save true with load_best_at_end (the best checkpoint must be written to be loaded)",
                       False, "set train.save=true, or train.load_best_at_end=false")
        return self

    @model_validator(mode="after")
    def _best_checkpoint(self) -> "TrainSpec":
        """transformers compares checkpoints by the evaluation at their step: each save needs one."""
        if self.load_best_at_end and self.save_steps % self.eval_steps:
            multiple = max(1, round(self.save_steps / self.eval_steps)) * self.eval_steps
            raise fail("save_steps", f"a multiple of eval_steps ({self.eval_steps}) with load_best_at_end (a "
                       "checkpoint is compared by the evaluation at its step)", self.save_steps,
                       f"e.g. save_steps={multiple}, or an eval_steps that divides {self.save_steps}")
        return self

    def schedule_kwargs(self) -> dict:
        """Training length, learning-rate schedule, label smoothing and best checkpoint, as
        transformers' TrainingArguments name them; at the defaults, its behaviour of before."""
        if self.num_epochs is not None:
            duration = {"max_steps": -1, "num_train_epochs": self.num_epochs}
        else:
            duration = {"max_steps": self.max_steps}
        best = {}
        if self.load_best_at_end:
            best = {"load_best_model_at_end": True, "metric_for_best_model": self.best_metric,
                    "greater_is_better": not lower_is_better(self.best_metric)}
        return {**duration, "warmup_steps": self.warmup_steps, "lr_scheduler_type": self.lr_scheduler,
                "label_smoothing_factor": self.label_smoothing, **best}


class GenerateSpec(Block):
    """Decoding on the eval split (and by ``predict``): greedy, beam search, sampling or contrastive
    search, with transformers' own parameters. Unset parameters keep transformers' defaults."""

    temperature: float = Field(0.0, ge=0, description="0 means no sampling (greedy or beam search); above 0 samples.")
    metrics: list[Literal[GENERATION]] = Field(
        ["exact_match"], min_length=1, description="seq2seq eval metrics: exact_match, bleu (sacrebleu), rouge_l.")
    n_samples: PositiveInt = Field(1, description="Sequences returned per prompt: samples, or the best beams "
                                   "(above 1 needs temperature > 0 or num_beams >= n_samples).")
    max_new_tokens: PositiveInt = Field(64, description="Generation length cap.")
    num_beams: PositiveInt = Field(1, description="Beam search width (1: no beam search).")
    top_k: Optional[PositiveInt] = Field(None, description="Sampling: keep the k most likely tokens; contrastive "
                                         "search: the candidates (needs temperature > 0 or penalty_alpha).")
    top_p: Optional[float] = Field(None, gt=0, le=1, description="Sampling: nucleus mass in (0, 1] (needs temperature > 0).")
    repetition_penalty: Optional[PositiveFloat] = Field(None, description="Above 1 penalises repeated tokens.")
    no_repeat_ngram_size: NonNegativeInt = Field(0, description="Never repeat an n-gram of this size (0: off).")
    length_penalty: float = Field(1.0, description="Beam search: exponent on the length in the beam score "
                                  "(above 1 favours longer outputs; needs num_beams > 1 when not 1).")
    penalty_alpha: Optional[float] = Field(None, gt=0, le=1, description="Contrastive search: the degeneration "
                                           "penalty in (0, 1]; needs top_k > 1, no sampling and num_beams 1.")
    allowed_outputs: Optional[Union[str, list[str]]] = Field(
        None, description="Constrained decoding: outputs are only these strings (a list, or a file: a path from where "
        "the command runs when one is there, else under mount/data, made absolute at submission; a JSON list, a data "
        "file's top-level 'labels', or one per line), e.g. taxonomy paths; beam search returns the best n_samples "
        "of them.")

    @model_validator(mode="after")
    def _combinations(self) -> "GenerateSpec":
        sampling = self.temperature > 0
        if self.n_samples > 1 and not sampling and self.num_beams < self.n_samples:
            raise fail("n_samples", "temperature > 0, or num_beams >= n_samples, when n_samples > 1 (greedy "
                       "samples are identical)", self.n_samples)
        if self.top_p is not None and not sampling:
            raise fail("top_p", "top_p only with sampling (temperature > 0)", self.top_p)
        if self.penalty_alpha is not None:
            if sampling or self.num_beams > 1 or (self.top_k or 0) < 2:
                raise fail("penalty_alpha", "contrastive search: temperature 0, num_beams 1 and top_k > 1",
                           f"temperature={self.temperature}, num_beams={self.num_beams}, top_k={self.top_k}")
        elif self.top_k is not None and not sampling:
            raise fail("top_k", "top_k only with sampling (temperature > 0) or contrastive search (penalty_alpha)",
                       self.top_k)
        if self.allowed_outputs is not None:
            if isinstance(self.allowed_outputs, list) and not all(isinstance(x, str) and x for x in self.allowed_outputs
                                                                  ) or not self.allowed_outputs:
                raise fail("allowed_outputs", "a non-empty list of non-empty strings, or a file", self.allowed_outputs)
            if sampling or self.penalty_alpha is not None:
                raise fail("allowed_outputs", "beam search or greedy decoding (temperature 0, no penalty_alpha) "
                           "with allowed_outputs", f"temperature={self.temperature}, penalty_alpha={self.penalty_alpha}")
        if self.length_penalty != 1.0 and self.num_beams == 1:
            raise fail("length_penalty", "length_penalty only with beam search (num_beams > 1)", self.length_penalty)
        return self

    def generation_kwargs(self) -> dict:
        """Arguments of ``model.generate`` (transformers' names), leaving unset ones to its defaults."""
        kwargs = {"max_new_tokens": self.max_new_tokens, "num_return_sequences": self.n_samples,
                  "do_sample": self.temperature > 0, "num_beams": self.num_beams}
        optional = {"temperature": self.temperature or None, "top_k": self.top_k, "top_p": self.top_p,
                    "repetition_penalty": self.repetition_penalty, "penalty_alpha": self.penalty_alpha,
                    "no_repeat_ngram_size": self.no_repeat_ngram_size or None,
                    "length_penalty": self.length_penalty if self.num_beams > 1 else None}
        return {**kwargs, **{k: v for k, v in optional.items() if v is not None}}


class ClassifierSpec(Block):
    """task: classifier. Scores p(yes) = softmax(yes, no logits) at the first decoder step."""

    template: str = Field("{input}", description="Prompt template; {input} (and {label} for multi-label).")
    multilabel_template: str = Field("{input} Is the category {label}?",
                                     description="Multi-label prompt: one yes/no question per (input, label).")
    labels: Optional[list[str]] = Field(None, description="Multi-label: the label set (else the data file's 'labels').")
    top_k: PositiveInt = Field(1, description="Multi-label: K for precision/recall/F1 at K.")
    thresholds: list[float] = Field([0.5], min_length=1, description="Multi-label: thresholds tried in descending "
                                    "order until at least one label passes.")
    default_label: Optional[str] = Field(None, description="Multi-label: label used when no threshold passes.")
    negatives_per_positive: Optional[PositiveInt] = Field(
        None, description="Multi-label training: sample this many negative labels per positive (default: all).")

    @model_validator(mode="after")
    def _check(self) -> "ClassifierSpec":
        if "{input}" not in self.template:
            raise fail("template", "a template containing {input}", self.template)
        if not {"{input}", "{label}"} <= {t for t in ("{input}", "{label}") if t in self.multilabel_template}:
            raise fail("multilabel_template", "a template containing {input} and {label}", self.multilabel_template)
        if any(not 0 <= t <= 1 for t in self.thresholds):
            raise fail("thresholds", "thresholds in [0, 1]", self.thresholds)
        self.thresholds = sorted(self.thresholds, reverse=True)
        return self


class ResourcesSpec(Block):
    nodes: PositiveInt = Field(1, description="Nodes per point.")
    gpus_per_node: NonNegativeInt = Field(0, description="GPUs per node; 0 runs on CPU.")
    cpus_per_task: PositiveInt = Field(2, description="CPU cores per task.")
    mem_gb: PositiveFloat = Field(8, description="Host memory per node, in GiB.")
    timeout_min: PositiveInt = Field(60, description="Wall-clock limit per point, in minutes.")
    gpu_type: Optional[str] = Field(None, description="GPU model, e.g. A100-80GB (memory planning, ctl --gpus-type).")
    gpu_mem_gb: Optional[PositiveFloat] = Field(None, description="GPU memory in GiB (default: from gpu_type).")
    tasks_per_node: Optional[PositiveInt] = Field(
        None, description="Processes per node. Default: one per GPU, or 1 on CPU.")

    @property
    def tasks(self) -> int:
        """Processes per node."""
        return self.tasks_per_node or max(1, self.gpus_per_node)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks

    @property
    def on_cpu(self) -> bool:
        return self.gpus_per_node == 0


class TrackingSpec(Block):
    experiment: str = Field("t5-finetune", min_length=1, description="MLflow experiment name.")
    uri: Optional[str] = Field(
        None, description="MLflow tracking URI (a relative sqlite file: from where the command runs). Unset: "
        "$MLFLOW_TRACKING_URI, else a sqlite file in the project.")


class DeepSpeedSpec(Block):
    enabled: bool = Field(False, description="Train through DeepSpeed.")
    stage: Union[int, str] = Field(
        2, description="ZeRO stage: 0, 2 or 3; auto: the fastest choice the memory plan says fits the GPUs "
        "and host memory (no ZeRO, else ZeRO-2, else ZeRO-3, then offload), shown in the dry run.")
    offload_optimizer: Literal["none", "cpu"] = Field("none", description="Optimizer state offload.")
    offload_param: Literal["none", "cpu"] = Field("none", description="Parameter offload (ZeRO-3 only).")
    gather_16bit_weights_on_save: bool = Field(True, description="ZeRO-3: save a consolidated 16-bit model.")
    reduce_bucket_size: Union[PositiveInt, Literal["auto"]] = Field(
        "auto", description="ZeRO-2/3: elements per gradient reduce bucket (auto: d_model squared, e.g. 4.2M at xl).")
    allgather_bucket_size: PositiveInt = Field(
        500_000_000, description="ZeRO-2: elements per parameter all-gather bucket.")
    stage3_prefetch_bucket_size: Union[PositiveInt, Literal["auto"]] = Field(
        "auto", description="ZeRO-3: elements of parameters fetched ahead (auto: 0.9 x d_model squared).")
    stage3_param_persistence_threshold: Union[NonNegativeInt, Literal["auto"]] = Field(
        "auto", description="ZeRO-3: parameters with fewer elements stay whole on every GPU (auto: 10 x d_model).")
    stage3_max_live_parameters: PositiveInt = Field(
        1_000_000_000, description="ZeRO-3: elements of gathered parameters kept on a GPU at once.")
    bf16: Optional[bool] = Field(None, description="DeepSpeed-style alias of train.precision=bf16.")
    fp16: Optional[bool] = Field(None, description="DeepSpeed-style alias of train.precision=fp16.")

    @model_validator(mode="after")
    def _check(self) -> "DeepSpeedSpec":
        if isinstance(self.stage, str) and self.stage.strip().isdigit():
            self.stage = int(self.stage)
        if self.stage not in (0, 2, 3, "auto"):
            raise fail("stage", "a ZeRO stage of 0, 2 or 3, or auto", self.stage)
        if self.stage == "auto":
            for key in ("offload_optimizer", "offload_param"):
                if getattr(self, key) != "none":
                    raise fail(key, f"{key} unset with stage auto (auto chooses the offload)", getattr(self, key))
            return self
        if self.offload_param != "none" and self.stage != 3:
            raise fail("offload_param", "offload_param 'none' unless stage is 3 (offload_param needs stage 3)",
                       f"offload_param={self.offload_param!r} with stage {self.stage}")
        if self.bf16 and self.fp16:
            raise fail("fp16", "one of fp16 and bf16 (fp16 and bf16 cannot both be enabled)", "both true")
        return self


class LoraSpec(Block):
    r: PositiveInt = Field(8, description="LoRA rank.")
    alpha: PositiveInt = Field(16, description="LoRA scaling numerator (alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(["q", "v"], min_length=1, description="Module names to adapt (T5: q k v o wi wo).")
    quantize: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA: load the frozen base in 4-bit NF4 (bf16 compute) or 8-bit through "
        "bitsandbytes (GPU only; pip install -e '.[gpu]'). export merges into a full-precision model.")


class LocalSpec(Block):
    max_parallel: PositiveInt = Field(1, description="Points run at once by the local backend.")


class SlurmSpec(Block):
    """SLURM-only settings. Resources come from ``resources``; this block holds the rest."""

    partition: Optional[str] = Field(None, description="Partition (default: the cluster's default).")
    account: Optional[str] = Field(None, description="Account to charge.")
    qos: Optional[str] = Field(None, description="Quality of service.")
    constraint: Optional[str] = Field(None, description="Node feature constraint.")
    array_parallelism: PositiveInt = Field(64, description="Array tasks running at once, over the whole sweep.")
    max_requeues: NonNegativeInt = Field(3, description="Requeues allowed after preemption or time limit.")
    signal_delay_s: PositiveInt = Field(120, description="USR2 this many seconds before the time limit.")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before the job (module loads, venv).")
    sbatch: dict[str, Any] = Field(default_factory=dict, description="Extra sbatch flags, passed through verbatim.")
    srun_args: list[str] = Field(default_factory=list, description="Extra srun arguments, e.g. a container prefix.")
    python: Optional[str] = Field(None, description="Python on the nodes (default: the launcher's).")


class CtlSpec(Block):
    """Settings of the ``ctl job run`` cluster CLI."""

    container: Optional[str] = Field(None, description="Container image (--container); required for ctl.")
    login: bool = Field(False, description="Pass --login.")
    high_priority: bool = Field(False, description="Pass --high-priority.")
    shared_host_dir: str = Field("/mnt/shared", description="Host dir shared into the container (--shared-host-dir).")
    repo_dir: Optional[str] = Field(None, description="Where this repo lives inside the container (default: here).")


ATTENTION = ("sdpa", "eager", "flex_attention")


class SpeedSpec(Block):
    """How a job computes, not what (never hashed): kernels and compilation. Each option trains
    to the same loss as the default within numerical noise (tests/integration/test_speed_options.py)."""

    attention: Literal[ATTENTION] = Field(
        "sdpa", description="T5 attention kernel: sdpa (torch's scaled_dot_product_attention, the relative position "
        "bias as an additive mask), eager (matmul + softmax) or flex_attention (torch's FlexAttention).")
    compile: bool = Field(False, description="torch.compile each T5 block (regional compilation: one graph, reused "
                          "by every layer); falls back to eager where it cannot compile.")
    fused_rms_norm: bool = Field(False, description="T5's layer norm through torch.nn.functional.rms_norm (one fused "
                                 "kernel on GPU) instead of its Python arithmetic.")
    preemption_check_steps: PositiveInt = Field(
        1, description="Steps between the ranks' agreement on a preemption (an all-reduce and a host sync each, "
        "with more than one process); a USR2 then stops within this many steps.")


class CoverageSpec(Block):
    """How much of the data the tokenizer may map to <unk> (checked at validation, never hashed)."""

    max_unk: float = Field(0.01, ge=0, le=1, description="Share of sampled words or characters that may "
                           "map to <unk> before validation warns.")
    error: bool = Field(False, description="Refuse the job, instead of warning, above max_unk.")
    sample: NonNegativeInt = Field(2000, description="Records checked per split (0: no check).")


RETRYABLE = tuple(c.value for c in Cause if c not in (Cause.UNKNOWN,))


class RetrySpec(Block):
    """Failures that resubmit themselves (the launcher resubmits them: see the README's Retries)."""

    max: NonNegativeInt = Field(2, description="Automatic resubmissions of a point, over all causes.")
    on: list[str] = Field(..., min_length=1, description="Causes that resubmit: node_fail, nccl, preempted, timeout, "
                          "oom_gpu (re-plans: the next ZeRO rung, or half the micro batch), oom_host, code, data, "
                          "cancelled.")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads an unquoted ``on:`` key as the boolean true."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @field_validator("on")
    @classmethod
    def _causes(cls, value: list[str]) -> list[str]:
        for cause in value:
            if cause not in RETRYABLE:
                raise fail("", f"causes among {', '.join(RETRYABLE)}", cause, close_match(cause, RETRYABLE))
        return list(dict.fromkeys(value))


SAMPLERS = ("tpe", "gp", "cmaes", "random", "grid")
PRUNERS = ("asha", "median", "hyperband", "none")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")


class TrialSpec(Block):
    """A point that is one trial of an adaptive search (a sweep file's ``search:`` block): the
    job asks the study for its parameters when it starts. Written by the launcher, not by hand."""

    study: str = Field(..., description="The study's name (the sweep's).")
    slot: NonNegativeInt = Field(..., description="Which of the search's trials this point is (0-based).")
    space: dict[str, dict[str, list]] = Field(..., description="key.path: {loguniform|uniform|int|choice: [...]}.")
    sampler: Literal[SAMPLERS] = Field("tpe", description="Optuna's sampler.")
    seed: int = Field(0, description="The sampler's seed.")
    startup: PositiveInt = Field(10, description="TPE/GP: trials sampled at random before the model guides the rest.")
    metric: str = Field("eval_loss", description="What the study optimises (its direction from the metric registry).")
    pruner: Literal[PRUNERS] = Field("asha", description="What stops bad trials early.")
    min_steps: PositiveInt = Field(100, description="The pruner's first rung: no trial is stopped before it.")
    reduction: int = Field(3, ge=2, description="ASHA/hyperband: the share of trials kept at each rung is 1/reduction.")
    storage: Optional[str] = Field(None, description="An RDB URL; unset: a JournalFile study.journal in the sweep's "
                                   "folder (safe on a shared file system; never SQLite on one).")

    @property
    def direction(self) -> str:
        return "minimize" if lower_is_better(self.metric) else "maximize"


class JobSpec(Block):
    """One training job. Unknown keys are errors."""

    task: Literal[tuple(TASKS)] = Field(
        "seq2seq", description="seq2seq (prompt -> completion) or classifier (yes/no score against a target).")
    model_init_name: Optional[str] = Field(
        None, description="Folder under mount/models holding the initial model (from_pretrained).")
    model_init_path: Optional[str] = Field(
        None, description="The initial model when model_init_name is unset: a local path when it exists or starts "
        "with /, ./, ../ or ~ (relative to where the command runs; made absolute at submission), else a hub id such "
        "as google/flan-t5-xl (with HF_HUB_OFFLINE=1, refused unless in the hub cache).")
    data_name: str = Field(..., min_length=1, description="Data file under mount/data (name also finds name.json; "
                           "JSON lines too), or an absolute path; never relative to where the command runs.")
    run_name: Optional[str] = Field(None, description="Readable run name (default: the point name).")
    output_dir: Optional[str] = Field(None, description="Where the final model goes (default: <run dir>/model); "
                                      "relative to where the command runs (made absolute at submission).")
    backend: Literal["local", "slurm", "ctl"] = Field("local", description="Where points run: local, slurm or ctl.")
    train: TrainSpec = Field(default_factory=TrainSpec)
    generate: GenerateSpec = Field(default_factory=GenerateSpec)
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    deepspeed: DeepSpeedSpec = Field(default_factory=DeepSpeedSpec)
    lora: Optional[LoraSpec] = Field(None, description="LoRA adapters through peft (unset: full fine-tuning).")
    local: LocalSpec = Field(default_factory=LocalSpec)
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)
    ctl: CtlSpec = Field(default_factory=CtlSpec)
    tokenizer_coverage: CoverageSpec = Field(default_factory=CoverageSpec)
    retry: Optional[RetrySpec] = Field(None, description="Automatic resubmission of failed points (unset: none).")
    speed: SpeedSpec = Field(default_factory=SpeedSpec)
    search: Optional[TrialSpec] = Field(None, description="Set by a sweep's search block: this point is a trial.")

    @property
    def task_info(self) -> Task:
        return TASKS[self.task]

    @property
    def model_source(self) -> str:
        """Where ``from_pretrained`` loads the initial model from: a folder or a hub id."""
        if self.model_init_name:
            return str(models_dir() / self.model_init_name)
        return os.path.expanduser(self.model_init_path)

    @property
    def samples_per_step(self) -> int:
        """Examples per optimizer step over all ranks."""
        return self.train.train_batch_size * self.train.gradient_accumulation_steps * self.resources.world_size

    def get(self, dotted: str) -> Any:
        """The value at a dotted key path, e.g. ``spec.get("train.learning_rate")``."""
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value

    def model_dir(self, rd: RunDir) -> Path:
        """Where the final model goes."""
        return Path(self.output_dir) if self.output_dir else rd.model

    def tracked_params(self) -> dict:
        """The resolved keys that matter for this run, for MLflow's params: the task's own block
        (not the other task's), the block of the backend used (not the others'), DeepSpeed and
        LoRA only when on. Every resolved key stays in the spec artifact (spec.yaml)."""
        data = self.model_dump(mode="json")
        own = set(self.task_info.blocks) | {self.backend}
        unused = {b for task in TASKS.values() for b in task.blocks} | {"local", "slurm", "ctl"}
        data = {k: v for k, v in data.items() if k not in unused - own}
        if not self.deepspeed.enabled:
            data["deepspeed"] = {"enabled": False}
        return nest({k: v for k, v in flatten(data).items() if v is not None})

    def point_hash(self, known: dict[int, str] | None = None) -> str:
        """Stable id of the point: the hash of the keys that change what is computed (the rules
        are ``workflow.point_hash``'s; ``known``: hash texts of blocks shared by many points)."""
        return hash_rules.point_hash(self, known)

    # The spec-wide checks below may set fields of these blocks (precision, accumulation), so a
    # sweep's points never share them (``workflow.launch.sweep_blocks``).
    SET_BY_CHECKS: ClassVar[frozenset[str]] = frozenset({"train"})

    @model_validator(mode="after")
    def _precision_aliases(self) -> "JobSpec":
        ds = self.deepspeed
        alias = "bf16" if ds.bf16 else "fp16" if ds.fp16 else None
        if alias:
            if "precision" in self.train.model_fields_set and self.train.precision != alias:
                raise fail(f"deepspeed.{alias}", f"train.precision {alias} or unset", self.train.precision)
            self.train.precision = alias
        return self

    @model_validator(mode="after")
    def _batch_arithmetic(self) -> "JobSpec":
        train, world = self.train, self.resources.world_size
        if train.global_batch_size is None:
            return self
        per_step = train.train_batch_size * world
        if "gradient_accumulation_steps" not in train.model_fields_set and train.global_batch_size % per_step == 0:
            train.gradient_accumulation_steps = train.global_batch_size // per_step
        product = per_step * train.gradient_accumulation_steps
        if product != train.global_batch_size:
            hint = (f"set gradient_accumulation_steps={train.global_batch_size // per_step}"
                    if train.global_batch_size % per_step == 0 else f"a multiple of {per_step}")
            raise fail("train.global_batch_size",
                       f"micro batch {train.train_batch_size} x accumulation {train.gradient_accumulation_steps} "
                       f"x world size {world} = {product} ({hint})", train.global_batch_size)
        return self

    @model_validator(mode="after")
    def _gpu_only_choices(self) -> "JobSpec":
        gpus, ds = self.resources.gpus_per_node, self.deepspeed
        if self.lora and self.lora.quantize != "none":
            if gpus == 0:
                raise fail("lora.quantize", "'none' on CPU-only resources (bitsandbytes quantisation runs on "
                           "GPUs; set resources.gpus_per_node or drop lora.quantize)", self.lora.quantize)
            if ds.enabled and ds.stage in (3, "auto"):
                raise fail("lora.quantize", f"'none' with ZeRO stage {ds.stage} (quantised weights cannot be "
                           "partitioned; use deepspeed.stage 2 or deepspeed.enabled false)", self.lora.quantize)
        if self.retry and Cause.OOM_GPU in self.retry.on and gpus == 0 and injected_fault() is None:
            raise fail("retry.on", "causes that a CPU-only point can fail by (oom_gpu needs GPUs; set "
                       "resources.gpus_per_node or drop oom_gpu)", self.retry.on)
        if ds.enabled and ds.stage == "auto" and gpus == 0:
            raise fail("deepspeed.stage", "a stage of 0, 2 or 3 on CPU-only resources (auto plans GPU memory)",
                       "auto")
        return self

    @model_validator(mode="after")
    def _task_train_keys(self) -> "JobSpec":
        if self.task == "classifier" and self.train.label_smoothing:
            raise fail("train.label_smoothing", "0 with task classifier (its yes/no loss trains against the "
                       "data's targets in [0, 1]: soften those instead)", self.train.label_smoothing)
        return self

    @model_validator(mode="after")
    def _one_model_source(self) -> "JobSpec":
        if not self.model_init_name and not self.model_init_path:
            raise fail("model_init_name", "model_init_name (a folder under mount/models) or model_init_path",
                       None)
        if self.model_init_name and self.model_init_path:
            raise fail("model_init_path", "only one of model_init_name and model_init_path",
                       f"both ({self.model_init_name!r}, {self.model_init_path!r})")
        return self


def block_type(annotation: Any) -> type[BaseModel] | None:
    """The block model behind an annotation, unwrapping Optional[...]."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def field_paths(model: type[BaseModel] = JobSpec, prefix: str = "") -> dict[str, Any]:
    """Every dotted key path of the spec, mapped to its pydantic FieldInfo."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        path = prefix + name
        sub = block_type(info.annotation)
        if sub is not None:
            out.update(field_paths(sub, path + "."))
        else:
            out[path] = info
    return out


def reference_markdown() -> str:
    """The README's spec reference, generated from the fields (a test keeps the README equal)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for path, info in field_paths().items():
        default = "required" if info.is_required() else f"`{info.get_default(call_default_factory=True)!r}`"
        lines.append(f"| `{path}` | {default} | {(info.description or '').replace('|', '/')} |")
    return "\n".join(lines)
