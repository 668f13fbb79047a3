"""What submitit runs on each SLURM task: ``SlurmTask``, around the one job entry ``run_job``.

The SLURM-only pieces sit here: the task's output into the point's log, the rendezvous port of
a multi-task job, submitit's checkpoint-and-requeue after a preemption, and ``--fail_fast``'s
cancel of the rest of the array. submitit pickles ``SlurmTask`` by this module's path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import submitit

from workflow.node.preempt import FLAG, Preempted
from workflow.node.run import run_job
from workflow.rundir import RunDir

log = logging.getLogger("workflow")


class SlurmTask(submitit.helpers.Checkpointable):
    """``run_job(run_dir)`` with the distributed environment from SLURM, and requeue.

    Preemption (USR2, also sent before the time limit) sets a flag; training saves a checkpoint
    at the next step and stops; then submitit's own handler checkpoints this callable (same
    arguments) and requeues the job within its requeue budget. On restart, training resumes
    from the newest complete checkpoint and logs into the same MLflow run.
    """

    def __call__(self, run_dir: str, raw: dict | None = None) -> dict:
        """``raw``: the point's job.json content (the launcher writes no file per point)."""
        rd = RunDir(Path(run_dir))
        rd.root.mkdir(parents=True, exist_ok=True)
        _redirect_output(rd.log)
        os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        job = submitit.JobEnvironment()
        if job.num_tasks > 1:  # one task needs no rendezvous (DeepSpeed alone gets a free port)
            os.environ["MASTER_PORT"] = str(master_port(job.job_id))  # read by submitit's export
            # overwrite: values inherited from the submitting shell describe another job
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        try:
            return run_job(run_dir, raw, requeue=lambda: _requeue(job))
        except Preempted:
            time.sleep(600)  # other ranks: rank 0's requeue, or its end, ends this task
            raise
        except SystemExit:  # rank 0 requeued the job
            raise
        except BaseException as exc:  # recorded by run_job
            if job.global_rank == 0 and not isinstance(exc, KeyboardInterrupt) and _fail_fast(rd, raw):
                _cancel_siblings()
            raise


def _requeue(job: submitit.JobEnvironment) -> None:
    """Rank 0: submitit's own USR2 handler checkpoints this callable and requeues the job, then
    exits (SystemExit); it raises when the job may not be requeued (its requeue budget after time
    limits is spent, or the cluster refuses: ``--no-requeue``). Other ranks return."""
    if job.global_rank == 0 and callable(FLAG.previous):
        FLAG.previous(FLAG.signum, None)


def master_port(job_id: str) -> int:
    """The rendezvous port of a multi-task job: the same on every task and node (derived from the
    job id), and below Linux's ephemeral range (32768-60999), where an outgoing connection can
    hold a port picked at random. submitit picks in 20000-60000: a single-task array point that
    rendezvoused on such a port failed with EADDRINUSE in the SLURM tests."""
    return 20000 + int(hashlib.sha256(job_id.encode()).hexdigest(), 16) % 12000


def _redirect_output(log_path: Path) -> None:
    """Send this task's stdout and stderr to the point's log (all ranks append)."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _fail_fast(rd: RunDir, raw: dict | None) -> bool:
    """Whether the sweep was launched with --fail_fast (the point's context says)."""
    try:
        context = (raw if raw is not None else rd.read_job())["context"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(context.get("fail_fast"))


def _cancel_siblings() -> None:
    """--fail_fast on SLURM: a failing array task cancels the rest of its array."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        log.warning("--fail_fast: cancelling array %s after this failure", array)
        subprocess.run(["scancel", array], timeout=60, check=False)
