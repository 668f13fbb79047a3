"""The one function a node runs: ``main(run_dir)``. Plain data in (``run_dir/job.json``).

Every backend ends here: the local backend as ``python -m workflow.node.entrypoint <run_dir>``,
SLURM through submitit, ``ctl`` through the task's original command line. The node imports
``workflow`` from the sweep's code snapshot; heavy imports happen here, never in the launcher.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import submitit

from workflow.jsonio import read_json, write_json
from workflow.node import quiet
from workflow.preempt import FLAG, Preempted
from workflow.rundir import RunDir
from workflow.secrets import redact
from workflow.spec import JobSpec
from workflow.states import State

log = logging.getLogger("workflow")
ERROR_TAIL_LINES = 8


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Job:
    """What one rank runs: the validated spec, the launcher's context, its run directory."""

    spec: JobSpec
    context: dict
    rd: RunDir
    dist: DistEnv


def dist_env() -> DistEnv:
    """Ranks from torchrun or submitit's exported variables; a single process otherwise."""
    env = os.environ
    return DistEnv(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def main(run_dir: str, raw: dict | None = None) -> dict:
    """``raw``: job.json's content, when the job carries it (SLURM); else read from run_dir."""
    job = setup(RunDir(Path(run_dir)), raw)
    tracker = start_tracking(job)
    try:
        results = job.spec.task_info.load_recipe()(job.spec, job.rd, tracker, job.dist).run()
    except Preempted as exc:
        on_preempted(job, tracker, exc)
        raise
    except BaseException as exc:
        on_failure(job, tracker, exc)
        raise
    if job.dist.is_main:
        job.rd.write_state(state=State.COMPLETED, ended_at=time.time(), results=results)
        tracker.finish(State.COMPLETED.mlflow_status)
    log.info("point %s done: %s", job.context["point_name"], results)
    return results


def setup(rd: RunDir, raw: dict | None = None) -> Job:
    """Validate job.json (given, or read from the run directory); set up logging, signals and
    the environment. A job that carries its job.json writes it into its run directory (rank 0),
    for what reads it later (compare, predict, export)."""
    dist = dist_env()
    if raw is None:
        raw = rd.read_job()
    elif dist.rank == 0:
        write_json(rd.job, raw, indent=None)
    job = Job(JobSpec.model_validate(raw["spec"]), raw["context"], rd, dist)
    os.environ.update(job.context.get("env", {}))  # the launcher's mount, runs and MLflow folders
    quiet.apply(job.spec.resources.on_cpu)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s [rank {job.dist.rank}] %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_RedactSecrets())
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
    if job.spec.deepspeed.enabled:
        _deepspeed_env(job.spec)
    if job.dist.is_main and not rd.spec_yaml.is_file():
        _write_spec_yaml(raw["spec"], rd)
    return job


def _write_spec_yaml(spec: dict, rd: RunDir) -> None:
    """The resolved spec for people (and MLflow's artifact), written here rather than by the
    launcher: at submission it costs a YAML dump per point, 10 s for 10,000 points."""
    import yaml

    rd.spec_yaml.write_text(yaml.dump(spec, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))


def start_tracking(job: Job):
    """The rank-0 tracker, the version check, and the RUNNING state."""
    tracker = _tracker(job)
    _check_versions(tracker)
    code = job.context.get("code") or {}
    log.info("code: %s (commit %s%s)", Path(__file__).resolve().parents[2], code.get("commit", "unknown"),
             ", with uncommitted changes" if code.get("dirty") else "")
    diff = Path(code["dir"]) / "code.diff" if code.get("dir") else None
    if diff is not None and diff.is_file():
        tracker.log_artifact(diff)
    if job.context.get("deepspeed_auto"):
        log.info("%s", job.context["deepspeed_auto"])
        tracker.set_tags({"deepspeed_auto": job.context["deepspeed_auto"]})
    if job.dist.is_main:
        job.rd.write_state(state=State.RUNNING, started_at=time.time(), host=socket.gethostname(), pid=os.getpid(),
                           mlflow_run_id=tracker.run_id, error=None)
    log.info("point %s (%s) starting on %s, world size %d", job.context["point_name"], job.context["point_hash"],
             socket.gethostname(), job.dist.world_size)
    return tracker


def on_preempted(job: Job, tracker, exc: Preempted) -> None:
    log.warning("%s", exc)
    if job.dist.is_main:
        count = job.rd.read_state().get("preemptions", 0) + 1
        job.rd.write_state(state=State.REQUEUED, preempted_at=time.time(), preemptions=count)
        tracker.set_tags({"preemptions": count})


def on_failure(job: Job, tracker, exc: BaseException) -> None:
    """Record the error (state, MLflow tags), close the run; --fail_fast cancels the array."""
    killed = isinstance(exc, KeyboardInterrupt)
    summary = redact(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
    traceback.print_exc(file=sys.stdout)
    sys.stdout.flush()
    if not job.dist.is_main:
        return
    tail = redact(_tail(job.rd.log, ERROR_TAIL_LINES))
    job.rd.write_state(state=State.CANCELLED if killed else State.FAILED, ended_at=time.time(),
                       error=summary, error_tail=tail)
    tracker.set_tags({"error": summary, "error_tail": tail[-4000:]})
    tracker.finish((State.CANCELLED if killed else State.FAILED).mlflow_status)
    if job.context.get("fail_fast") and not killed:
        _cancel_siblings()


def exit_without_finalizing(code: int) -> None:
    """Flush and leave, skipping interpreter finalization. torch's process-group worker threads can
    still be releasing collective work that holds Python tensors when the interpreter finalizes;
    such a thread is then torn down inside a C++ destructor and the process aborts ("terminate
    called without an active exception"; seen on a gloo ZeRO-3 rank right after a completed job,
    which torchrun then failed)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cancel_siblings() -> None:
    """--fail_fast on SLURM: a failing array task cancels the rest of its array."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        import subprocess

        log.warning("--fail_fast: cancelling array %s after this failure", array)
        subprocess.run(["scancel", array], timeout=60, check=False)


def _deepspeed_env(spec: JobSpec) -> None:
    """DeepSpeed needs a rendezvous even for one process (else it tries MPI discovery), and
    the CPU accelerator when there is no GPU."""
    if spec.resources.on_cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from workflow.node.cuda_arch import fix_environment

    change = fix_environment(os.environ)
    if change:
        log.warning("%s", change)
    if "WORLD_SIZE" not in os.environ:
        defaults = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                    "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
        for key, value in defaults.items():
            os.environ.setdefault(key, value)


def _check_versions(tracker) -> None:
    """Log the training stack's versions; warn (log and MLflow tag) when one is outside its pin."""
    from workflow import versions

    found = versions.installed()
    log.info("versions: %s", ", ".join(f"{k} {v}" for k, v in found.items()))
    wrong = versions.mismatches(found, versions.pins())
    if wrong:
        log.warning("installed versions differ from the project's pins: %s", "; ".join(wrong))
        tracker.set_tags({"version_mismatch": "; ".join(wrong)})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tracker(job: Job):
    from workflow.tracking import Tracker
    from workflow.paths import usable_tracking_uri

    context = job.context
    run_id = context.get("mlflow_run_id") or job.rd.read_state().get("mlflow_run_id")
    parent = context.get("parent_run_id")
    if job.dist.is_main and not run_id and not parent and context.get("parent_file"):
        parent = _parent_run(Path(context["parent_file"]))
    tracker = Tracker(usable_tracking_uri(context["tracking_uri"]), run_id, job.rd, enabled=job.dist.is_main,
                      experiment=context["experiment"], parent_run_id=parent,
                      run_name=context["point_name"], tags={**context.get("tags", {}), "host": socket.gethostname()})
    tracker.start()
    return tracker


PARENT_WAIT_S = 120  # the launcher's helper registers the sweep's parent run within seconds of submission


def _parent_run(path: Path, timeout: float = PARENT_WAIT_S) -> str | None:
    """The sweep's parent run id, from the file its registering helper writes (a job that starts
    before it waits). None when the registration failed or is late: the run is created without
    a parent, and status or sync attaches it."""
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        reply = read_json(path)
        if reply.get("parent_run_id"):
            return reply["parent_run_id"]
        if reply.get("error") or time.monotonic() > deadline:
            log.warning("the sweep's MLflow parent run is not registered (%s); this point's run gets its parent "
                        "from status or sync", reply.get("error") or f"no {path.name} after {timeout:.0f} s")
            return None
        if not waiting:
            log.info("waiting for the sweep's MLflow parent run (%s)", path)
            waiting = True
        time.sleep(0.5)


class _RedactSecrets(logging.Filter):
    """Mask credential values in every log record this tool writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class SlurmTask(submitit.helpers.Checkpointable):
    """What submitit runs on each SLURM task: ``main(run_dir)`` with distributed env and requeue.

    Preemption (USR2, also sent before the time limit) sets a flag; training saves a checkpoint
    at the next step and stops; then submitit's own handler checkpoints this callable (same
    arguments) and requeues the job within its requeue budget. On restart, training resumes
    from the newest complete checkpoint and logs into the same MLflow run.
    """

    def __call__(self, run_dir: str, raw: dict | None = None) -> dict:
        """``raw``: the point's job.json content (the launcher writes no file per point)."""
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        _redirect_output(RunDir(Path(run_dir)).log)
        os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        job = submitit.JobEnvironment()
        if job.num_tasks > 1:  # one task needs no rendezvous (DeepSpeed alone gets a free port)
            os.environ["MASTER_PORT"] = str(master_port(job.job_id))  # read by submitit's export
            # overwrite: values inherited from the submitting shell describe another job
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        FLAG.install()
        try:
            result = main(run_dir, raw)
            atexit.register(exit_without_finalizing, 0)  # after submitit has saved the result
            return result
        except Preempted:
            if submitit.JobEnvironment().global_rank == 0 and callable(FLAG.previous):
                FLAG.previous(FLAG.signum, None)  # submitit: checkpoint + requeue + exit
            time.sleep(600)  # other ranks: the requeue ends this task
            raise


def master_port(job_id: str) -> int:
    """The rendezvous port of a multi-task job: the same on every task and node (derived from the
    job id), and below Linux's ephemeral range (32768-60999), where an outgoing connection can
    hold a port picked at random. submitit picks in 20000-60000: a single-task array point that
    rendezvoused on such a port failed with EADDRINUSE in the SLURM tests."""
    import hashlib

    return 20000 + int(hashlib.sha256(job_id.encode()).hexdigest(), 16) % 12000


def _redirect_output(log_path: Path) -> None:
    """Send this task's stdout and stderr to the point's log (all ranks append)."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    FLAG.install()  # local and ctl jobs: USR2 saves a checkpoint and stops (state PREEMPTED); a re-run resumes
    try:
        main(sys.argv[1])
    except BaseException:
        exit_without_finalizing(1)
    exit_without_finalizing(0)
