"""The local backend: each point runs ``python -m workflow.entrypoint <run_dir>`` in its own
process on this machine, the same entrypoint a cluster node runs. Sequential by default;
``local.max_parallel`` runs several at once (threads are split between them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workflow.backends.base import Backend, EventHook, JobState, Request
from workflow.errors import BackendError, Problem
from workflow.manifest import Manifest, PointRecord
from workflow.paths import PROJECT_ROOT
from workflow.rundir import RunDir
from workflow.states import State

if TYPE_CHECKING:  # annotations only: status and cancel never load the spec machinery
    from workflow.plan import Plan
    from workflow.sweep import Point

POLL_S = 0.2


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
    fail_fast: bool = False

    def describe(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env)
        lines = [f"# local backend: {len(self.jobs)} process(es), at most {self.max_parallel} at a time"]
        for job in self.jobs:
            lines.append(f"cd {shlex.quote(str(PROJECT_ROOT))} && {env} {shlex.join(job.argv)} "
                         f"> {shlex.quote(job.run_dir + '/log.txt')} 2>&1")
        return "\n".join(lines)


def entry_argv(run_dir: Path | str, nproc: int = 1) -> tuple[str, ...]:
    """One process, or torchrun with ``nproc`` ranks on this node (gloo on CPU)."""
    if nproc == 1:
        return (sys.executable, "-m", "workflow.entrypoint", str(run_dir))
    return (sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "workflow.entrypoint", str(run_dir))


class LocalBackend(Backend):
    name = "local"
    waits = True

    def render(self, plan: Plan, points: list[Point]) -> LocalRequest:
        _check_single_node(plan, points)
        max_parallel = min(p.spec["local"]["max_parallel"] for p in points) if points else 1
        ranks = max(_nproc(p.spec) for p in points) if points else 1
        threads = max(1, (os.cpu_count() or 1) // (max_parallel * ranks))
        root = str(plan.root)
        jobs = tuple(LocalJob(p.hash, p.name, f"{root}/{p.slug}", entry_argv(f"{root}/{p.slug}", _nproc(p.spec)))
                     for p in points)
        return LocalRequest(jobs, max_parallel, (("OMP_NUM_THREADS", str(threads)),), plan.fail_fast)

    def submit(self, request: LocalRequest, manifest: Manifest, on_event: EventHook) -> None:
        queue = list(request.jobs)
        running: dict[str, subprocess.Popen] = {}
        env = {**os.environ, **dict(request.env), "PYTHONPATH": _pythonpath()}
        try:
            while queue or running:
                while queue and len(running) < request.max_parallel:
                    job = queue.pop(0)
                    running[job.hash] = self._start(job, env, manifest, on_event)
                for digest, proc in list(running.items()):
                    if proc.poll() is not None:
                        del running[digest]
                        self._finish(manifest.points[digest], proc.returncode, manifest, on_event)
                        if proc.returncode != 0 and request.fail_fast:
                            queue = self._stop_after_failure(queue, running, manifest)
                time.sleep(POLL_S)
        except BaseException:
            for digest, proc in running.items():
                _terminate(proc)
                record = manifest.points[digest]
                record.state, record.ended_at = State.CANCELLED, time.time()
            manifest.save()
            raise

    @staticmethod
    def _stop_after_failure(queue: list, running: dict, manifest: Manifest) -> list:
        """--fail_fast: cancel what runs, and leave queued points unsubmitted (PLANNED)."""
        for digest, proc in running.items():
            _terminate(proc)
            record = manifest.points[digest]
            record.state, record.ended_at, record.error = State.CANCELLED, time.time(), "cancelled by --fail_fast"
        for job in queue:
            manifest.points[job.hash].error = "not run: --fail_fast after an earlier failure"
        running.clear()
        manifest.save()
        return []

    def _start(self, job: LocalJob, env: dict, manifest: Manifest, on_event: EventHook) -> subprocess.Popen:
        run_dir = RunDir(Path(job.run_dir))
        with run_dir.log.open("ab") as log:
            proc = subprocess.Popen(job.argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        record = manifest.points[job.hash]
        record.job_id, record.state = f"local:{proc.pid}", State.RUNNING
        record.submitted_at = record.started_at = time.time()
        record.ended_at, record.error = None, None
        manifest.save()
        on_event("started", record)
        return proc

    def _finish(self, record: PointRecord, code: int, manifest: Manifest, on_event: EventHook) -> None:
        node = RunDir(Path(record.run_dir)).read_state()
        record.state = _final_state(code, node.get("state"))
        record.ended_at = time.time()
        record.error = None if code == 0 else PREEMPTED_NOTE if record.state == State.PREEMPTED else (
            node.get("error") or f"exit code {code}")
        manifest.save()
        on_event("finished", record)

    def poll(self, records: list[PointRecord]) -> dict[str, JobState]:
        out = {}
        for record in records:
            state = RunDir(Path(record.run_dir)).read_state()
            pid = int(record.job_id.split(":")[1]) if record.job_id and record.job_id.startswith("local:") else None
            current = state.get("state", record.state)
            if current == State.REQUEUED and not (pid and _alive(pid)):
                current = State.PREEMPTED  # no scheduler requeues a local job: a re-run resumes it
            if current == State.RUNNING and not (pid and _alive(pid)):
                current = State.FAILED if record.state not in (State.COMPLETED, State.CANCELLED) else record.state
            out[record.hash] = JobState(current, record.job_id)
        return out

    def cancel(self, records: list[PointRecord]) -> list[str]:
        done = []
        for record in records:
            if record.job_id and record.job_id.startswith("local:"):
                pid = int(record.job_id.split(":")[1])
                if _alive(pid):
                    os.killpg(pid, signal.SIGTERM)
                    done.append(record.hash)
        return done


PREEMPTED_NOTE = "preempted (USR2): a checkpoint was saved; run the point again to resume from it"


def _final_state(code: int, node_state: str | None) -> str:
    """The manifest state of a finished local process from its exit code and the node's state."""
    if code == 0:
        return State.COMPLETED
    if node_state == State.REQUEUED:
        return State.PREEMPTED
    return node_state if node_state in (State.FAILED, State.CANCELLED) else State.FAILED


def _nproc(spec: dict) -> int:
    res = spec["resources"]
    return res["tasks_per_node"] or max(1, res["gpus_per_node"])


def _check_single_node(plan: Plan, points: list[Point]) -> None:
    if any(p.spec["resources"]["nodes"] > 1 for p in points):
        raise BackendError("The local backend runs on one node", [Problem(
            plan.sweep.file, "resources.nodes", "1 with the local backend",
            str(max(p.spec["resources"]["nodes"] for p in points)), "use --backend slurm for multi-node jobs")])


def _pythonpath() -> str:
    parts = [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
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
