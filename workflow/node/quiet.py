"""Noise in a point's log that a user cannot act on, silenced in one place. Each entry names the
message it removes; anything not listed here still reaches log.txt. The log keeps one line per
logged step (``workflow.hf``'s tracking callback), the tool's own INFO lines, and every warning
and error of the libraries that is not listed below."""

from __future__ import annotations

import logging
import os
import warnings

# Set before torch, transformers, datasets or deepspeed are imported.
ENVIRONMENT = {
    # tqdm bars ("Loading weights", "tokenizing", "Saving the dataset", "Writing model shards"):
    # carriage-return animations that fill a log file; the step lines say the same.
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    # "[c10d] The hostname of the client socket cannot be retrieved. err=-3": a failed reverse
    # lookup of the peer's address at rendezvous; the connection works.
    "TORCH_CPP_LOG_LEVEL": "ERROR",
}

# (category, start of the message): Python warnings dropped.
WARNINGS = [
    # torch.distributed: "barrier(): using the device under current context ... No device id is
    # provided": DeepSpeed's and the Trainer's barriers on CPU/gloo, where there is no device to name.
    (UserWarning, r".*barrier\(\).*device"),
    (UserWarning, r".*No device id is provided via `init_process_group` or `barrier"),
]

# Loggers whose INFO lines are not the user's business: the gcc probes of DeepSpeed's op
# builder ("compilers.C.base: gcc ... test.c"), and "JAX version ... available" and the like
# from transformers' and datasets' import checks. Their warnings still show.
WARNING_ONLY = ("compilers", "distutils", "transformers.utils.import_utils", "datasets.config", "torch.distributed")
# bitsandbytes' CPU backend warns at import on AVX512-BF16 hosts that an optional kernel package
# is missing: a CPU fallback, unused on GPUs.
ERROR_ONLY = ("bitsandbytes.backends.cpu.ops",)


def environment(env: dict = os.environ) -> None:
    for key, value in ENVIRONMENT.items():
        env.setdefault(key, value)


def apply(on_cpu: bool) -> None:
    """Environment defaults, warning filters and logger levels; ``on_cpu``: also name DeepSpeed's
    accelerator, whose auto-detection otherwise warns "Setting accelerator to CPU. If you have GPU
    ... we were unable to detect it" in every CPU job (DeepSpeed is imported by transformers even
    when a job does not use it)."""
    environment()
    if on_cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for category, pattern in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in WARNING_ONLY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ERROR_ONLY:
        logging.getLogger(name).setLevel(logging.ERROR)


def without_printer(trainer) -> None:
    """The Trainer prints each log dict ("{'loss': '5.959', ...}") beside our step line: once is enough."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
