"""The local backend: each point runs ``python -m workflow.node.run <run_dir>`` in its own
process on this machine, the same job entry a cluster node runs, from the sweep's code
snapshot. Sequential by default; ``local.max_parallel`` runs several at once (the cores are
split between them, unless OMP_NUM_THREADS is set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workflow.errors import Problem
from workflow.failures import exit_words
from workflow.launch.backends.base import Backend, JobState, Report, Request, refuse
from workflow.paths import PROJECT_ROOT
from workflow.rundir import RunDir
from workflow.states import State

if TYPE_CHECKING:  # annotations only: status and cancel never load the spec machinery
    from workflow.launch.manifest import PointRecord
    from workflow.launch.plan import Plan
    from workflow.launch.sweep import Point

POLL_S = 0.2
ENTRYPOINT = "workflow.node.run"


@dataclass(frozen=True)
class LocalJob:
    hash: str
    name: str
    run_dir: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class LocalRequest(Request):
    jobs: tuple[LocalJob, ...]
    max_parallel: int
    env: tuple[tuple[str, str], ...]
    cwd: str  # the code snapshot (or the checkout): the jobs import workflow from here
    fail_fast: bool = False

    def describe(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env)
        lines = [f"# local backend: {len(self.jobs)} process(es), at most {self.max_parallel} at a time"]
        for job in self.jobs:
            lines.append(f"cd {shlex.quote(self.cwd)} && {env} {shlex.join(job.argv)} "
                         f"> {shlex.quote(job.run_dir + '/log.txt')} 2>&1")
        return "\n".join(lines)


def entry_argv(run_dir: Path | str, nproc: int = 1) -> tuple[str, ...]:
    """One process, or torchrun with ``nproc`` ranks on this node (gloo on CPU)."""
    if nproc == 1:
        return (sys.executable, "-m", ENTRYPOINT, str(run_dir))
    return (sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", ENTRYPOINT, str(run_dir))


def _threads(processes: int) -> str:
    """Threads per process: OMP_NUM_THREADS as the caller set it (a shared machine, or a model too
    small to gain from more; OpenMP's nested form 4,2 included), else this machine's cores split
    between the processes."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if re.fullmatch(r"[1-9][0-9]*(,[1-9][0-9]*)*", given):
        return given
    return str(max(1, (os.cpu_count() or 1) // processes))


class LocalBackend(Backend):
    name = "local"
    waits = True

    def problems(self, file: str, points: list[Point]) -> list[Problem]:
        return _single_node(file, points)

    def render(self, plan: Plan, points: list[Point]) -> LocalRequest:
        refuse("The local backend runs on one node", self.problems(plan.sweep.file, points))
        max_parallel = min(p.spec.local.max_parallel for p in points) if points else 1
        ranks = max(p.spec.resources.tasks for p in points) if points else 1
        threads = _threads(max_parallel * ranks)
        jobs = tuple(LocalJob(p.hash, p.name, plan.run_path(p), entry_argv(plan.run_path(p), p.spec.resources.tasks))
                     for p in points)
        cwd = str(plan.code.root if plan.code else PROJECT_ROOT)
        env = (("OMP_NUM_THREADS", threads), ("PYTHONPATH", _pythonpath(cwd)))
        return LocalRequest(jobs, max_parallel, env, cwd, plan.fail_fast)

    def schedule(self, request: LocalRequest, report: Report, jobs: dict[str, dict]) -> None:
        queue = list(request.jobs)
        by_hash = {job.hash: job for job in queue}
        running: dict[str, subprocess.Popen] = {}
        env = {**os.environ, **dict(request.env)}
        try:
            while queue or running:
                while queue and len(running) < request.max_parallel:
                    job = queue.pop(0)
                    running[job.hash] = self._start(job, env, request.cwd, report)
                for digest, proc in list(running.items()):
                    if proc.poll() is not None:
                        del running[digest]
                        report({digest: _final_state(proc, by_hash[digest])})
                        if proc.returncode != 0 and request.fail_fast:
                            queue = self._stop_after_failure(queue, running, report)
                time.sleep(POLL_S)
        except BaseException:  # Ctrl-C or SIGTERM: what runs is stopped, what waits never runs
            for proc in running.values():
                _terminate(proc)
            news = {digest: JobState(State.CANCELLED, f"local:{proc.pid}") for digest, proc in running.items()}
            news.update({job.hash: JobState(State.CANCELLED, error=STOPPED_NOTE) for job in queue})
            report(news)
            raise

    @staticmethod
    def _stop_after_failure(queue: list, running: dict, report: Report) -> list:
        """--fail_fast: cancel what runs, and leave queued points unsubmitted (PLANNED)."""
        for proc in running.values():
            _terminate(proc)
        news = {d: JobState(State.CANCELLED, f"local:{p.pid}", error="cancelled by --fail_fast")
                for d, p in running.items()}
        news.update({job.hash: JobState(State.PLANNED, error="not run: --fail_fast after an earlier failure")
                     for job in queue})
        report(news)
        running.clear()
        return []

    @staticmethod
    def _start(job: LocalJob, env: dict, cwd: str, report: Report) -> subprocess.Popen:
        with RunDir(Path(job.run_dir)).log.open("ab") as log:
            proc = subprocess.Popen(job.argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        report({job.hash: JobState(State.RUNNING, f"local:{proc.pid}")})
        return proc

    def poll(self, records: list[PointRecord]) -> dict[str, JobState]:
        out = {}
        for record in records:
            state = record.rundir.read_state()
            pid = _pid(record.job_id)
            current = state.get("state", record.state)
            if current == State.REQUEUED and not (pid and _alive(pid)):
                current = State.PREEMPTED  # no scheduler requeues a local job: a re-run resumes it
            if current == State.RUNNING and not (pid and _alive(pid)):
                current = State.FAILED if record.state not in (State.COMPLETED, State.CANCELLED) else record.state
            out[record.hash] = JobState(State(current), record.job_id)
        return out

    def cancel(self, records: list[PointRecord]) -> list[str]:
        done = []
        for record in records:
            pid = _pid(record.job_id)
            if pid and _alive(pid):
                os.killpg(pid, signal.SIGTERM)
                done.append(record.hash)
        return done


STOPPED_NOTE = "not run: the launcher was stopped (--retry failed runs it)"
PREEMPTED_NOTE = "preempted (USR2): a checkpoint was saved; run the point again to resume from it"


def _final_state(proc: subprocess.Popen, job: LocalJob) -> JobState:
    """A finished process's state, from its exit code and what the node wrote."""
    node = RunDir(Path(job.run_dir)).read_state()
    job_id, code = f"local:{proc.pid}", proc.returncode
    if code == 0:
        return JobState(State.COMPLETED, job_id)
    if node.get("state") == State.PREEMPTED:
        return JobState(State.PREEMPTED, job_id, error=PREEMPTED_NOTE)
    state = node.get("state") if node.get("state") in (State.FAILED, State.CANCELLED) else State.FAILED
    return JobState(State(state), job_id, error=node.get("error") or exit_words(code))


def _pid(job_id: str | None) -> int | None:
    return int(job_id.split(":")[1]) if job_id and job_id.startswith("local:") else None


def _single_node(file: str, points: list[Point]) -> list[Problem]:
    nodes = max((p.spec.resources.nodes for p in points), default=1)
    return [Problem(file, "resources.nodes", "1 with the local backend", str(nodes),
                    "use --backend slurm for multi-node jobs")] if nodes > 1 else []


def _pythonpath(code: str) -> str:
    parts = [code] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def _alive(pid: int) -> bool:
    """True while the process runs; a zombie (dead, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _terminate(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
