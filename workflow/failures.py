"""Why a point failed: one cause from a small fixed set, from what the job raised (the node
records it before it exits) and from what the backend reports (the scheduler's final state,
the process's exit). Shared by the node and the launcher: nothing heavy is imported here.

A test seam stands in for the failures a CPU cannot produce: ``WF_INJECT_FAULT=<cause>@<step>``
(``oom_gpu``, ``nccl``, ``code``) makes the node raise that failure at that training step, on the
point's first attempt only (its automatic retry then shows the recovery). It is read in one
place, ``injected_fault``: the node's callback calls it, and the spec's check that ``retry.on``
holds ``oom_gpu`` only with GPUs lets a point with an injected fault stand in for one.
"""

from __future__ import annotations

import os
import re
import signal
import sysconfig
import traceback
from enum import Enum
from pathlib import Path

from workflow.states import State, TERMINAL_FAILED

INJECT_ENV = "WF_INJECT_FAULT"
CODE_ROOT = Path(__file__).resolve().parent.parent  # the checkout or the sweep's code snapshot


class Cause(str, Enum):
    OOM_GPU = "oom_gpu"      # torch.OutOfMemoryError, CUDA out of memory
    OOM_HOST = "oom_host"    # the scheduler's OUT_OF_MEMORY (the cgroup's OOM killer), MemoryError
    TIMEOUT = "timeout"      # past the time limit
    NODE_FAIL = "node_fail"  # the node went down under the job
    PREEMPTED = "preempted"  # stopped with a checkpoint (USR2) and not run again yet
    CANCELLED = "cancelled"  # scancel, cancel, Ctrl-C, SIGTERM
    NCCL = "nccl"            # collective timeouts, connection resets, rendezvous failures
    DATA = "data"            # the tool's own data errors
    CODE = "code"            # any other exception: its type, and where it was raised
    UNKNOWN = "unknown"      # the job left no record of why

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


BY_STATE = {State.TIMEOUT: Cause.TIMEOUT, State.NODE_FAIL: Cause.NODE_FAIL, State.OUT_OF_MEMORY: Cause.OOM_HOST,
            State.PREEMPTED: Cause.PREEMPTED, State.CANCELLED: Cause.CANCELLED}
DIST_ERRORS = {"DistError", "DistBackendError", "DistNetworkError", "DistStoreError", "RendezvousError",
               "RendezvousTimeoutError", "RendezvousConnectionError", "ChildFailedError"}
NCCL_WORDS = re.compile(r"\bNCCL\b|ProcessGroupNCCL|ProcessGroupGloo|\bgloo\b|Watchdog caught collective|"
                        r"Connection reset by peer|[Rr]endezvous|collective operation timeout", re.ASCII)
GPU_OOM_WORDS = re.compile(r"CUDA out of memory|CUBLAS_STATUS_ALLOC_FAILED|CUDA error: out of memory")


def of_exception(exc: BaseException) -> tuple[Cause, str | None]:
    """The cause of what the job raised, and where (``file:line`` of the innermost frame in the
    tool's or the user's code, not in a library's)."""
    where = raised_at(exc.__traceback__)
    if isinstance(exc, KeyboardInterrupt):
        return Cause.CANCELLED, where
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc)
    if "OutOfMemoryError" in names or GPU_OOM_WORDS.search(text):
        return Cause.OOM_GPU, where
    if names & DIST_ERRORS or NCCL_WORDS.search(text):
        return Cause.NCCL, where
    if "DataError" in names:
        return Cause.DATA, where
    if isinstance(exc, MemoryError):
        return Cause.OOM_HOST, where
    return Cause.CODE, where


def of_point(state: State | str, node: dict) -> tuple[Cause | None, str | None]:
    """The cause of a point that ended in ``state`` (None: it did not fail), from the scheduler's
    word where it has one (a time limit, a node failure, the cgroup's OOM killer: the node only
    saw a SIGTERM, or nothing), else from the node's record (``state.json``: ``cause``, ``where``)."""
    state = State(state)
    if state not in TERMINAL_FAILED and state != State.UNKNOWN:
        return None, None
    if state in BY_STATE:
        return BY_STATE[state], node.get("where")
    recorded = node.get("cause")
    return (Cause(recorded) if recorded in Cause._value2member_map_ else Cause.UNKNOWN), node.get("where")


def exit_words(code: int) -> str:
    """A process's exit status in words: ``exit code 3``, ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def raised_at(tb) -> str | None:
    """``file:line`` of the innermost frame outside the standard library and installed packages
    (relative to the code root when it is the tool's own); the innermost frame if all are."""
    frames = traceback.extract_tb(tb) if tb is not None else []
    if not frames:
        return None
    libraries = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    ours = [f for f in frames if not any(f.filename.startswith(p) for p in libraries)
            and "site-packages" not in f.filename and "dist-packages" not in f.filename]
    frame = (ours or frames)[-1]
    path = Path(frame.filename)
    try:
        shown = str(path.resolve().relative_to(CODE_ROOT))
    except ValueError:
        shown = str(path)
    return f"{shown}:{frame.lineno}"


ALLOCATION = re.compile(r"Tried to allocate ([0-9.]+) (GiB|MiB)")


def gpu_need_gb(exc: BaseException) -> float | None:
    """After an out-of-GPU-memory error on a node: what the step needed at least, in GiB (torch's
    peak reserved memory on this rank's GPU plus the allocation that failed); None without CUDA.
    The re-plan of the retry corrects the memory plan's estimate with it."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    found = ALLOCATION.search(str(exc))
    tried = float(found.group(1)) / (1 if found.group(2) == "GiB" else 1024) if found else 0.0
    return round(torch.cuda.max_memory_reserved() / 2**30 + tried, 2)


def injected_fault() -> tuple[str, int] | None:
    """The test seam: ``WF_INJECT_FAULT=<cause>@<step>`` -> (cause, step); None when unset."""
    value = os.environ.get(INJECT_ENV, "")
    if not value:
        return None
    cause, _, step = value.partition("@")
    if cause not in (Cause.OOM_GPU, Cause.NCCL, Cause.CODE) or not step.isdigit():
        raise ValueError(f"{INJECT_ENV}={value!r}: expected oom_gpu@STEP, nccl@STEP or code@STEP")
    return cause, int(step)


def raise_injected(cause: str, step: int) -> None:
    """Raise, at ``step``, what a real failure of ``cause`` raises (torch's own types)."""
    import torch

    note = f"(injected by {INJECT_ENV} at step {step})"
    if cause == Cause.OOM_GPU:
        raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB {note}")
    if cause == Cause.NCCL:
        raise torch.distributed.DistBackendError(f"NCCL error: Watchdog caught collective operation timeout {note}")
    raise RuntimeError(f"a failure in the training code {note}")
