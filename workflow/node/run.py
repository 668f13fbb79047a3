"""The one entry of every job on a node: ``run_job(run_dir)``. Plain data in (``run_dir/job.json``).

Local jobs run ``python -m workflow.node.run <run_dir>``, SLURM tasks ``SlurmTask``
(workflow.node.slurm_task), ``ctl`` jobs the task's original command line with ``--job_file``,
which its shim hands here before anything of the launcher is imported. The node imports
``workflow`` from the sweep's code snapshot; heavy imports happen here, never in the launcher.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workflow import failures
from workflow.jsonio import read_json, write_json
from workflow.node import quiet
from workflow.node.preempt import FLAG, Preempted
from workflow.rundir import RunDir
from workflow.secrets import redact
from workflow.spec import JobSpec
from workflow.states import State

log = logging.getLogger("workflow")
ERROR_TAIL_LINES = 8
FAILURE_TAGS = ("error", "error_tail", "failure.cause", "failure.where")


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


def _defer_swallowed_stop(default_hook):
    """A stop raised inside a weakref callback or ``__del__`` is printed and dropped by Python,
    and training would go on: send the signal again, from a thread a moment later, so that it
    lands in the main thread outside the callback."""

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            again = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
            again.daemon = True
            again.start()
        else:
            default_hook(unraisable)

    return hook


def run_job(run_dir: str, raw: dict | None = None, requeue: Callable[[], None] | None = None) -> dict:
    """What every job does: the USR2 flag, setup, tracking, the recipe, and the final or failure
    record. ``raw``: job.json's content, when the job carries it (SLURM); else read from run_dir.
    ``requeue``: after a preemption, asks the scheduler to start the job again (SLURM: state
    REQUEUED) and leaves the process; when it raises instead (no requeue left before the time
    limit, a job that may not be requeued), the job ends there: a ``timeout`` or ``preempted``
    failure with its checkpoint kept. Without it, a preempted job ends PREEMPTED and running it
    again resumes.

    Returns the results, and the process then leaves without finalizing once its caller is done
    (submitit saves the result first); raises what stopped the job, already recorded."""
    FLAG.install()  # USR2 saves a checkpoint at the next step and stops
    try:
        job = setup(RunDir(Path(run_dir)), raw)
        tracker = start_tracking(job)
    except KeyboardInterrupt as exc:  # stopped while it started: the launcher records how it ended
        print(f"stopped before training: {exc}", flush=True)
        raise
    except BaseException:
        traceback.print_exc(file=sys.stdout)  # before the job has a record to write it into
        raise
    try:
        results = job.spec.task_info.load_recipe()(job.spec, job.rd, tracker, job.dist, job.context).run()
    except Preempted as exc:
        on_preempted(job, tracker, exc, State.REQUEUED if requeue else State.PREEMPTED)
        if requeue is None:
            raise
        try:
            requeue()
        except Exception as refused:
            on_not_requeued(job, tracker, refused)
            raise refused from exc
        raise
    except BaseException as exc:
        on_failure(job, tracker, exc)
        if job.spec.search is not None:
            from workflow.node import trial

            trial.fail(job)
        raise
    if job.dist.is_main:
        job.rd.write_state(state=State.COMPLETED, ended_at=time.time(), results=results)
        tracker.finish(State.COMPLETED.mlflow_status)
    log.info("point %s done: %s", job.context["point_name"], results)
    atexit.register(exit_without_finalizing, 0)
    return results


def main(run_dir: str) -> None:
    """A job as its own process (local jobs, ctl's ``--job_file``): exit 0 when it completed."""
    try:
        run_job(run_dir)
    except BaseException:
        exit_without_finalizing(1)
    exit_without_finalizing(0)


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
    if job.spec.search is not None:  # a search trial: its parameters come from the study now
        from workflow.node import trial

        job = trial.attach(job)
        raw = {**raw, "spec": job.spec.model_dump(mode="json"), "context": job.context}
        if dist.rank == 0:
            write_json(rd.job, raw, indent=None)  # what compare, predict and export read: the resolved spec
            _write_spec_yaml(raw["spec"], rd)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
        sys.unraisablehook = _defer_swallowed_stop(sys.unraisablehook)
    if job.spec.deepspeed.enabled:
        _deepspeed_env(job.spec)
    if job.dist.is_main and (not rd.spec_yaml.is_file() or job.context.get("change")):  # a re-plan changed it
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
    attempt, change = job.context.get("attempt", 1), job.context.get("change")
    if attempt > 1:  # resubmitted after a failure: which attempt this is, and what its re-plan changed
        tracker.set_tags({"retry.attempt": str(attempt), **({"retry.change": change} if change else {})})
        log.info("attempt %d%s", attempt, f": {change}" if change else "")
    if job.dist.is_main:
        if job.rd.read_state().get("cause"):  # an earlier attempt failed: its run resumes without its failure
            tracker.delete_tags(list(FAILURE_TAGS))
        job.rd.write_state(state=State.RUNNING, started_at=time.time(), host=socket.gethostname(), pid=os.getpid(),
                           mlflow_run_id=tracker.run_id, error=None, cause=None, where=None,
                           attempt=attempt)
    log.info("point %s (%s) starting on %s, world size %d", job.context["point_name"], job.context["point_hash"],
             socket.gethostname(), job.dist.world_size)
    return tracker


def on_preempted(job: Job, tracker, exc: Preempted, state: State) -> None:
    log.warning("%s", exc)
    if job.dist.is_main:
        count = job.rd.read_state().get("preemptions", 0) + 1
        job.rd.write_state(state=state, preempted_at=time.time(), preemptions=count)
        tracker.set_tags({"preemptions": count})


def on_not_requeued(job: Job, tracker, refused: Exception) -> None:
    """The scheduler will not run the preempted job again: it ends here, ``timeout`` when the time
    limit is what stopped it and no requeue is left (submitit's words), else ``preempted``."""
    if "timed-out" in str(refused):
        state, cause, summary = State.TIMEOUT, failures.Cause.TIMEOUT, "time limit reached, no requeue left"
    else:
        state, cause, summary = State.PREEMPTED, failures.Cause.PREEMPTED, "preempted, and the job may not be requeued"
    log.warning("%s (%s: %s); the newest checkpoint is kept: run the point again (--retry %s), or give "
                "it a retry block, to resume from it", summary, type(refused).__name__, redact(str(refused)[:300]),
                cause.value)
    if not job.dist.is_main:
        return
    job.rd.write_state(state=state, ended_at=time.time(), error=summary, cause=cause.value, where=None)
    tracker.set_tags({"error": summary, "failure.cause": cause.value})
    tracker.finish(state.mlflow_status)


def on_failure(job: Job, tracker, exc: BaseException) -> None:
    """Record the error (state, MLflow tags) and close the run."""
    killed = isinstance(exc, KeyboardInterrupt)
    summary = redact(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
    if killed:  # a requested stop (SIGTERM, Ctrl-C): no traceback
        print(f"stopped: {summary}", flush=True)
    else:
        traceback.print_exc(file=sys.stdout)
    sys.stdout.flush()
    if not job.dist.is_main:
        return
    tail = redact(_tail(job.rd.log, ERROR_TAIL_LINES))
    cause, where = failures.of_exception(exc)
    need = failures.gpu_need_gb(exc) if cause == failures.Cause.OOM_GPU else None
    job.rd.write_state(state=State.CANCELLED if killed else State.FAILED, ended_at=time.time(),
                       error=summary, error_tail=tail, cause=cause.value, where=where, gpu_need_gb=need)
    tracker.set_tags({"error": summary, "error_tail": tail[-4000:], "failure.cause": cause.value,
                      **({"failure.where": where} if where else {})})
    tracker.finish((State.CANCELLED if killed else State.FAILED).mlflow_status)


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
    from workflow.node import versions

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
        parent = _parent_run(Path(context["parent_file"]), meanwhile=lambda: _preload(job))
    tracker = Tracker(usable_tracking_uri(context["tracking_uri"]), run_id, job.rd, enabled=job.dist.is_main,
                      experiment=context["experiment"], parent_run_id=parent,
                      run_name=context["point_name"], tags={**context.get("tags", {}), "host": socket.gethostname()})
    tracker.start()
    return tracker


PARENT_WAIT_S = 120  # the launcher's helper registers the sweep's parent run within seconds of submission


def _parent_run(path: Path, timeout: float = PARENT_WAIT_S, meanwhile=lambda: None) -> str | None:
    """The sweep's parent run id, from the file its registering helper writes (a job that starts
    before it waits, doing ``meanwhile`` first). None when the registration failed or is late:
    the run is created without a parent, and status or sync attaches it."""
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
            meanwhile()
            continue
        time.sleep(0.5)


def _preload(job: Job) -> None:
    """What the job imports next anyway (MLflow's client; the recipe: torch, transformers),
    imported while the helper registers the parent run on another core, rather than after it
    (seconds on the first point of a sweep). A failing import is left to raise where it is
    recorded, in the recipe's own import."""
    try:
        import importlib

        importlib.import_module("mlflow.tracking")
        job.spec.task_info.load_recipe()
    except Exception:  # noqa: BLE001  raised again, and recorded, when the recipe is loaded
        pass


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


if __name__ == "__main__":
    main(sys.argv[1])
