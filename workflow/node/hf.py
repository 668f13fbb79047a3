"""Shared Hugging Face pieces of the recipes: model loading, training arguments, training with
resume, the final save, and the Trainer callbacks. Imported on the node only."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, Seq2SeqTrainingArguments, TrainerCallback)

from workflow import failures
from workflow.jsonio import write_json
from workflow.node.zero import deepspeed_config
from workflow.node import speed
from workflow.node.preempt import FLAG, Preempted
from workflow.rundir import COMPLETE_MARKER, RunDir
from workflow.spec import JobSpec, LoraSpec

log = logging.getLogger("workflow.hf")


def load_model(spec: JobSpec, tracker=None):
    """``from_pretrained`` on a local folder or hub id: the same path flan-t5-xxl takes.
    Under ZeRO-3 the TrainingArguments already exist, so the weights load partitioned."""
    source = spec.model_source
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = model_class(source).from_pretrained(source, attn_implementation=speed.attention(spec.speed),
                                                **quantized_loading(spec))
    speed.apply(model, spec.speed)
    total = _param_count(model)
    log.info("loaded %s: %.2fM parameters", source, total / 1e6)
    if _zero3_partitioned(model):
        local = sum(p.ds_tensor.numel() for p in model.parameters())
        log.info("ZeRO-3: parameters partitioned, %d of %d held by this rank", local, total)
    if spec.lora:
        model = apply_lora(model, spec.lora, spec.train.gradient_checkpointing)
    if tracker is not None:
        trainable = sum(_numel(p) for p in model.parameters() if p.requires_grad)
        tracker.log_params({"model.parameters": total, "model.trainable_parameters": trainable})
        log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model, tokenizer


def model_class(source: str):
    """The seq2seq class for ``source``, keeping an untied LM head untied (flan-t5 and every T5
    v1.1 checkpoint: ``"tie_word_embeddings": false`` in config.json).

    transformers 5.x forces ``tie_word_embeddings=True`` on T5Config and leaves the head untied
    only when the checkpoint's two matrices load with different values. Under ZeRO-3 both are
    empty partitions, which compare equal, so the head was tied to the embedding and its weights
    dropped (an xl-shaped model trained 2.78B instead of 2.85B parameters, eval loss far off).
    A subclass without the head in its tied-weights map keeps the two apart on every path; the
    input embeddings stay tied to ``shared`` as in the checkpoint."""
    from transformers import AutoConfig, PretrainedConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(source)
    cls = MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING[type(config)]
    tied = dict(getattr(cls, "_tied_weights_keys", None) or {})
    untied_head = PretrainedConfig.get_config_dict(source)[0].get("tie_word_embeddings") is False
    if not untied_head or "lm_head.weight" not in tied:
        return cls
    tied.pop("lm_head.weight")
    return type(cls.__name__, (cls,), {"_tied_weights_keys": tied, "__module__": cls.__module__})


def _param_count(model) -> int:
    return sum(_numel(p) for p in model.parameters())


def _numel(param) -> int:
    """Elements of a parameter: ZeRO-3 keeps the full count aside, and 4-bit weights pack two per byte."""
    if hasattr(param, "ds_numel"):
        return param.ds_numel
    quant = getattr(param, "quant_state", None)
    return quant.shape.numel() if quant is not None else param.numel()


def _zero3_partitioned(model) -> bool:
    return any(hasattr(p, "ds_tensor") for p in model.parameters())


def quantized_loading(spec: JobSpec) -> dict:
    """QLoRA: ``from_pretrained`` arguments that load the frozen base in 4-bit NF4 (bf16 compute,
    double quantisation) or 8-bit through bitsandbytes, on this rank's GPU. Empty otherwise."""
    lora = spec.lora
    if not lora or lora.quantize == "none":
        return {}
    from transformers import BitsAndBytesConfig

    compute = torch.float16 if spec.train.precision == "fp16" else torch.bfloat16
    if lora.quantize == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=compute)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config, "device_map": {"": int(os.environ.get("LOCAL_RANK", 0))}}


def apply_lora(model, lora: LoraSpec, gradient_checkpointing: bool = False):
    from peft import LoraConfig, TaskType, get_peft_model

    if lora.quantize != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=lora.r, lora_alpha=lora.alpha,
                        lora_dropout=lora.dropout, target_modules=list(lora.target_modules))
    return get_peft_model(model, config)


def on_cpu(spec: JobSpec) -> bool:
    """True for a CPU point. A point that asks for GPUs on a node where CUDA is unusable fails here,
    before any work, instead of training silently on the CPU at a fraction of the speed."""
    gpus = spec.resources.gpus_per_node
    if gpus and not torch.cuda.is_available():
        import socket

        from workflow.errors import JobError, Problem

        raise JobError(f"No usable GPU on {socket.gethostname()}", [Problem(
            "job.json", "resources.gpus_per_node", "a node where torch sees CUDA devices",
            f"{gpus} GPU(s) asked, torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}) sees none",
            "check the driver, CUDA_VISIBLE_DEVICES and the torch build; set resources.gpus_per_node=0 to run on CPU")])
    return spec.resources.on_cpu


def training_args(spec: JobSpec, rd: RunDir) -> Seq2SeqTrainingArguments:
    """TrainingArguments from the spec. With DeepSpeed on CPU, the adjustments that stack needs
    (gloo, use_cpu) apply here and only here, so the GPU path stays the standard one."""
    train, ds = spec.train, spec.deepspeed
    cpu = on_cpu(spec)
    use_ds = ds.enabled and train.do_train
    if use_ds and cpu:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")  # zero.Init inside from_pretrained needs it
    return Seq2SeqTrainingArguments(
        output_dir=str(rd.checkpoints),
        learning_rate=train.learning_rate,
        **train.schedule_kwargs(),  # max_steps or epochs, warm-up, scheduler, label smoothing, best checkpoint
        per_device_train_batch_size=train.train_batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        weight_decay=train.weight_decay,
        eval_strategy="steps",
        eval_steps=train.eval_steps,
        save_strategy="steps" if train.save else "no",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        logging_steps=train.logging_steps,
        seed=train.seed,
        data_seed=train.seed,
        bf16=train.precision == "bf16",
        fp16=train.precision == "fp16",
        use_cpu=cpu,
        deepspeed=deepspeed_config(ds) if use_ds else None,
        # Non-reentrant checkpointing also works when the inputs need no grad (LoRA, QLoRA: frozen embeddings).
        **_checkpointing_args(train.gradient_checkpointing),
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        # T5 ignores num_items_in_batch, so averaging tokens across devices scales the loss by world size.
        average_tokens_across_devices=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )


def _checkpointing_args(on: bool) -> dict:
    """Activation checkpointing, by the argument names of the installed transformers (5.x renamed
    ``gradient_checkpointing`` to ``activation_checkpointing`` and warns on the old name)."""
    from transformers import TrainingArguments

    name = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing")
    return {name: on, f"{name}_kwargs": {"use_reentrant": False} if on else None}


def train_or_evaluate(trainer, spec: JobSpec, rd: RunDir, tracker) -> None:
    """Train (resuming from the newest complete checkpoint), or only measure eval loss."""
    if not spec.train.do_train:
        tracker.log_metrics({"eval_loss": trainer.evaluate()["eval_loss"]}, 0)
        return
    resume = rd.latest_checkpoint()
    if resume:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best:
        log.info("loaded the best checkpoint, %s (%s %.4g)", best, trainer.args.metric_for_best_model,
                 trainer.state.best_metric)
        tracker.set_tags({"best_checkpoint": best})
    if torch.cuda.is_available() and trainer.args.device.type == "cuda":
        peak = torch.cuda.max_memory_reserved(trainer.args.device) / 2 ** 30
        tracker.log_metrics({"gpu_peak_memory_gb": peak}, trainer.state.global_step)
        log.info("peak GPU memory reserved: %.2f GiB", peak)
    if FLAG.requested:
        raise Preempted(f"stopped at step {trainer.state.global_step} to be requeued")


def save_final(trainer, tokenizer, spec: JobSpec, rd: RunDir) -> Path:
    """Save the final model (adapters only under LoRA) on every rank: ZeRO-3 gathers collectively."""
    folder = spec.model_dir(rd)
    trainer.save_model(str(folder))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(folder))
        log.info("saved the final model to %s", folder)
    end_collectives(trainer)
    return folder


def unsaved_results(trainer) -> dict | None:
    """Without a final save (``train.save: false``): under ZeRO-3 no rank holds the whole model
    to generate with, so the final evaluation is the Trainer's eval loss, computed collectively
    here; None elsewhere (rank 0 generates with the model in memory)."""
    if not _zero3_partitioned(trainer.model):
        return None
    log.info("ZeRO-3 without a saved model: the final evaluation is the eval loss (no generation)")
    return {"eval_loss": trainer.evaluate()["eval_loss"]}


def end_collectives(trainer) -> None:
    """The final save is the job's last collective: every rank meets here, then the process group
    goes, before rank 0 generates alone and the others leave (see run.exit_without_finalizing
    for why they leave without finalizing the interpreter)."""
    trainer.accelerator.wait_for_everyone()  # the library's device-aware barrier (NCCL or gloo)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def record_results(results: dict, callback, trainer, rd: RunDir, tracker) -> dict:
    """Final metrics: eval_results.json, MLflow metrics, and the predictions and results artifacts."""
    results["best_eval_loss"] = callback.best_eval_loss
    write_json(rd.eval_results, results)
    tracker.log_metrics({k: v for k, v in results.items() if v != float("inf")}, trainer.state.global_step)
    for path in (rd.predictions, rd.eval_results):
        tracker.log_artifact(path)
    return results


def inference_model(trainer, saved: Path):
    """The trained model for generation on rank 0. ZeRO-3 keeps only a shard per rank, so the
    consolidated export is loaded back from disk (which also proves the export loads)."""
    model = trainer.model
    if not _zero3_partitioned(model):
        return model
    log.info("ZeRO-3: generating with the consolidated model saved in %s", saved)
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # load as a plain model on this rank alone, not partitioned
    loader = AutoModelForSeq2SeqLM
    if (saved / "adapter_config.json").is_file():
        from peft import AutoPeftModelForSeq2SeqLM as loader
    dtype = torch.bfloat16 if trainer.args.bf16 else torch.float32  # T5 overflows in fp16 inference
    return loader.from_pretrained(str(saved), dtype=dtype).to(trainer.args.device)  # on this rank's GPU


class TrackingCallback(TrainerCallback):
    """Sends Trainer logs to the tracker and writes a readable progress line to the point log."""

    def __init__(self, tracker, samples_per_step: int):
        self.tracker = tracker
        self.samples_per_step = samples_per_step
        self.best_eval_loss = float("inf")
        self.last = (0, time.time())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {_metric_name(k): v for k, v in logs.items() if isinstance(v, (int, float))}
        step, now = state.global_step, time.time()
        if "loss" in metrics and step > self.last[0]:
            metrics["samples_per_second"] = (step - self.last[0]) * self.samples_per_step / max(now - self.last[1], 1e-9)
            self.last = (step, now)
        if "eval_loss" in metrics:
            self.best_eval_loss = min(self.best_eval_loss, metrics["eval_loss"])
            metrics["best_eval_loss"] = self.best_eval_loss
        self.tracker.log_metrics(metrics, step)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch")
        log.info("step %d/%d  %s", step, state.max_steps, shown)

    def on_save(self, args, state, control, **kwargs):
        """Mark a checkpoint complete only after the Trainer has finished writing it."""
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                write_json(folder / COMPLETE_MARKER, {"step": state.global_step, "time": time.time()})


class PreemptionCallback(TrainerCallback):
    """On a preemption request (any rank), save a checkpoint at this step and stop training.

    Ranks must agree on the step, so with more than one process the flag is max-reduced every
    ``every`` steps (``speed.preemption_check_steps``; each is an all-reduce and a host sync); a
    single process reads its own flag and runs no collective."""

    def __init__(self, every: int = 1):
        self.every = every

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 and _any_rank(FLAG.requested, args.device):
            log.warning("preemption requested at step %d: saving a checkpoint and stopping", state.global_step)
            control.should_save = True
            control.should_training_stop = True
        return control


def fault_injection(rd: RunDir) -> list[TrainerCallback]:
    """The test seam's callback (``failures.injected_fault``), when the variable is set, on a
    point's first attempt only: its retry shows the recovery."""
    fault = failures.injected_fault()
    return [FaultCallback(*fault)] if fault and rd.read_state().get("attempt", 1) == 1 else []


class FaultCallback(TrainerCallback):
    """Raises the injected failure at the end of its step, on every rank."""

    def __init__(self, cause: str, step: int):
        self.cause, self.step = cause, step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            failures.raise_injected(self.cause, self.step)
        return control


def _any_rank(value: bool, device: torch.device) -> bool:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    return reduce_max(value, device)


def reduce_max(value: bool, device: torch.device) -> bool:
    """True on every rank when ``value`` is True on any rank."""
    dist = torch.distributed
    flag = torch.tensor([1 if value else 0], dtype=torch.int32, device=collective_device(dist.get_backend(), device))
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def collective_device(backend: str, device: torch.device) -> torch.device:
    """Where a tensor for a collective on ``backend`` must live: NCCL takes only CUDA tensors
    (this rank's, ``TrainingArguments.device``), gloo takes CPU tensors. A mixed backend such
    as ``cpu:gloo,cuda:nccl`` handles CPU tensors."""
    if backend == "gloo" or "cpu:" in backend:
        return torch.device("cpu")
    if device.type == "cpu":
        raise RuntimeError(f"the {backend} process group needs an accelerator device, but this rank runs on CPU")
    return device


def _metric_name(key: str) -> str:
    return {"train_samples_per_second": "train_samples_per_second_avg"}.get(key, key)


def package_versions() -> dict:
    from workflow.node.versions import installed

    return {f"version.{name}": value for name, value in installed().items()}
