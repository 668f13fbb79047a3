"""The SLURM backend, through submitit.

A sweep becomes one job array per chunk: points are grouped by their resource request, and
each group is cut into chunks that fit MaxArraySize (read from ``scontrol show config``).
The ``array_parallelism`` cap is shared out between chunks so the whole sweep never runs more
than that many tasks at once. ``render`` builds the exact sbatch scripts with submitit's own
``_make_sbatch_string``; ``submit`` hands the same parameters to ``executor.batch()``.

Status reads the scheduler with at most two commands for the whole sweep: one ``squeue``
and one ``sacct``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

from workflow.errors import BackendError, Problem, suggest
from workflow.launch.backends.base import Backend, JobState, Report, Request, refuse
from workflow.launch.early import Started
from workflow.launch.manifest import job_ids
from workflow.states import State

if TYPE_CHECKING:  # annotations only: status and cancel never load the spec machinery
    from workflow.launch.manifest import PointRecord
    from workflow.launch.plan import Plan
    from workflow.launch.sweep import Point
    from workflow.spec import JobSpec

DEFAULT_MAX_ARRAY_SIZE = 1001
COMMAND_TIMEOUT_S = 60

# SLURM job states -> the tool's states (one mapping, used by status and lifecycle).
STATE_MAP = {
    "PENDING": State.PENDING, "CONFIGURING": State.RUNNING, "RUNNING": State.RUNNING, "COMPLETING": State.RUNNING,
    "COMPLETED": State.COMPLETED, "FAILED": State.FAILED, "CANCELLED": State.CANCELLED, "TIMEOUT": State.TIMEOUT,
    "PREEMPTED": State.PREEMPTED, "OUT_OF_MEMORY": State.OUT_OF_MEMORY, "NODE_FAIL": State.NODE_FAIL,
    "BOOT_FAIL": State.NODE_FAIL, "DEADLINE": State.TIMEOUT, "REQUEUED": State.PENDING, "REQUEUE_FED": State.PENDING,
    "REQUEUE_HOLD": State.PENDING, "RESIZING": State.RUNNING, "SUSPENDED": State.PENDING, "STOPPED": State.PENDING,
    "SIGNALING": State.RUNNING, "STAGE_OUT": State.RUNNING, "SPECIAL_EXIT": State.FAILED, "REVOKED": State.CANCELLED,
}


@lru_cache(maxsize=256)
def map_state(raw: str) -> State:
    """'CANCELLED by 0' -> CANCELLED; unknown states stay visible as UNKNOWN."""
    word = raw.strip().split(" ")[0].rstrip("+") if raw.strip() else ""
    return STATE_MAP.get(word, State.UNKNOWN)


@dataclass(frozen=True)
class ClusterInfo:
    max_array_size: int
    partitions: dict  # name -> {"gpus": max GPUs per node, "default": bool}
    live: bool
    max_job_count: int | None = None


def run(argv: Sequence[str], started: Started | None = None, env: dict | None = None) -> str:
    """A SLURM command's output: read in ``started`` (where it may be under way already; a new
    one: run now); BackendError when it is not installed, fails, or does not answer in time.
    ``env``: variables to add."""
    try:
        answer = (started or Started()).answer(tuple(argv), COMMAND_TIMEOUT_S, env=env)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} not found", [Problem("<environment>", "PATH", f"the SLURM command {argv[0]}",
                                                            "not on PATH", "run on a SLURM login node")]) from None
    if answer.returncode is None:
        raise BackendError(f"{argv[0]} did not answer in {COMMAND_TIMEOUT_S} s")
    if not answer.ok:
        raise BackendError(f"{' '.join(argv[:2])} failed: {answer.err.strip()[:500]}")
    return answer.out


SHOW_CONFIG, PARTITIONS = ("scontrol", "show", "config"), ("sinfo", "-h", "-o", "%P|%G")


def cluster_info(started: Started) -> ClusterInfo:
    """MaxArraySize and the partitions' GPU counts, from scontrol and sinfo run side by side in
    ``started`` (the command's: the plan checks the cluster's limits, then the request is
    rendered for it, from one answer). Defaults when no SLURM is reachable (no commands here,
    or no controller answering): a dry run still shows the request, and a submission then
    fails at sbatch with SLURM's own message."""
    if shutil.which("scontrol") is None or shutil.which("sinfo") is None:
        return ClusterInfo(DEFAULT_MAX_ARRAY_SIZE, {}, False)
    started.start(SHOW_CONFIG, PARTITIONS)
    try:
        config, listed = run(SHOW_CONFIG, started), run(PARTITIONS, started)
    except BackendError:
        return ClusterInfo(DEFAULT_MAX_ARRAY_SIZE, {}, False)
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.M)
    jobs = re.search(r"^MaxJobCount\s*=\s*(\d+)", config, re.M)
    partitions: dict = {}
    for line in listed.splitlines():
        name, gres = (line.split("|") + [""])[:2]
        default = name.endswith("*")
        name = name.rstrip("*")
        gpus = max([int(n) for n in re.findall(r"gpu(?::[\w-]+)?:(\d+)", gres)] or [0])
        entry = partitions.setdefault(name, {"gpus": 0, "default": False})
        entry["gpus"] = max(entry["gpus"], gpus)
        entry["default"] = entry["default"] or default
    return ClusterInfo(int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE, partitions, True,
                       int(jobs.group(1)) if jobs else None)


ACTIVATE = re.compile(r"(?:^|[;&|]\s*)(?:source|\.)\s+['\"]?([^'\"\s;&|]+)/bin/activate\b")
PATH_SETUP = re.compile(r"\b(?:conda|mamba|micromamba)\s+activate\b|\bmodule\s+load\b|\bspack\s+load\b")


def node_python(slurm) -> str:
    """The python the job runs: ``slurm.python``; else the venv that ``slurm.setup`` activates
    (its bin/python); else ``python`` from the PATH that a conda/module setup line makes; else
    the launcher's own interpreter (same path on the nodes: a shared file system)."""
    if slurm.python:
        return slurm.python
    for line in slurm.setup:
        found = ACTIVATE.search(line)
        if found:
            return f"{found.group(1)}/bin/python"
    if any(PATH_SETUP.search(line) for line in slurm.setup):
        return "python"
    return sys.executable


def executor_parameters(spec: JobSpec, name: str, chdir: str | None = None) -> dict:
    """The one mapping from a spec to submitit's SLURM parameters. ``chdir``: the code snapshot,
    the jobs' working directory, from which they import workflow."""
    res, slurm = spec.resources, spec.slurm
    params = {
        "job_name": name, "nodes": res.nodes, "ntasks_per_node": res.tasks, "cpus_per_task": res.cpus_per_task,
        "mem": _mem(res.mem_gb), "time": res.timeout_min, "signal_delay_s": slurm.signal_delay_s,
        "stderr_to_stdout": True,
    }
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(slurm, key):
            params[key] = getattr(slurm, key)
    if slurm.setup:
        params["setup"] = list(slurm.setup)
    extra = {**({"chdir": chdir} if chdir else {}), **slurm.sbatch}
    if extra:
        params["additional_parameters"] = extra
    if slurm.srun_args:
        params["srun_args"] = list(slurm.srun_args)
    return params


def _mem(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


@dataclass(frozen=True)
class Chunk:
    hashes: tuple[str, ...]
    run_dirs: tuple[str, ...]
    parameters: dict
    parallelism: int
    script: str


@dataclass(frozen=True)
class SlurmRequest(Request):
    folder: str
    python: str
    max_requeues: int
    chunks: tuple[Chunk, ...]
    max_array_size: int
    live: bool

    def describe(self) -> str:
        lines = [f"# slurm backend: {sum(len(c.hashes) for c in self.chunks)} point(s) in "
                 f"{len(self.chunks)} sbatch submission(s); MaxArraySize {self.max_array_size}"
                 + ("" if self.live else " (default: no SLURM reachable from here)")]
        for i, chunk in enumerate(self.chunks):
            lines.append(f"# --- submission {i + 1}: {len(chunk.hashes)} point(s), "
                         f"at most {chunk.parallelism} running at once")
            lines.append(chunk.script)
        return "\n".join(lines)


class SlurmBackend(Backend):
    name = "slurm"
    carries_job = True  # in each task's pickle: a submission writes no file per point

    def render(self, plan: Plan, points: list[Point]) -> SlurmRequest:
        info = cluster_info(self.asking())
        refuse("The cluster cannot run this sweep", _resource_problems(plan.sweep.file, points, info))
        chdir = str(plan.code.root) if plan.code else None
        groups: dict[str, list[Point]] = {}
        keys: dict[tuple[int, int], str] = {}  # points that share their resources and slurm blocks (a sweep's
        for point in points:                    # base blocks) share their parameters: found once
            blocks = (id(point.spec.resources), id(point.spec.slurm))
            key = keys.get(blocks)
            if key is None:
                key = keys[blocks] = repr(sorted(executor_parameters(point.spec, plan.sweep.name, chdir).items()))
            groups.setdefault(key, []).append(point)
        size = max(1, info.max_array_size)  # array indices run 0 .. MaxArraySize-1
        pieces = [grp[i:i + size] for grp in groups.values() for i in range(0, len(grp), size)]
        first = points[0].spec.slurm if points else None
        shares = _share(first.array_parallelism if first else 1, [len(p) for p in pieces])
        folder = str(plan.root / ".submitit" / "%j")
        python = node_python(first) if first else sys.executable
        chunks = tuple(self._chunk(plan, piece, share, folder, python, chdir) for piece, share in zip(pieces, shares))
        return SlurmRequest(folder, python, first.max_requeues if first else 0, chunks, info.max_array_size, info.live)

    @staticmethod
    def _chunk(plan: Plan, points: list[Point], parallelism: int, folder: str, python: str,
               chdir: str | None) -> Chunk:
        from submitit.slurm.slurm import _make_sbatch_string

        params = executor_parameters(points[0].spec, plan.sweep.name, chdir)
        command = " ".join([python, "-u -m submitit.core._submit", folder])
        array = {"map_count": len(points), "array_parallelism": parallelism} if len(points) > 1 else {}
        script = _make_sbatch_string(command=command, folder=folder, **params, **array)
        return Chunk(tuple(p.hash for p in points), tuple(plan.run_path(p) for p in points),
                     params, parallelism, script)

    def problems(self, file: str, points: list[Point]) -> list[Problem]:
        return _resource_problems(file, points, cluster_info(self.asking()))

    def preflight(self) -> None:
        missing = [c for c in ("sbatch", "scontrol", "sinfo", "squeue") if shutil.which(c) is None]
        if missing:
            raise BackendError("No SLURM cluster reachable", [Problem(
                "<environment>", "PATH", "the SLURM commands sbatch, scontrol, sinfo, squeue", "missing: " +
                ", ".join(missing), "submit from a login node, or use --dry_run to see the sbatch script")])

    def schedule(self, request: SlurmRequest, report: Report, jobs: dict[str, dict]) -> None:
        import submitit

        from workflow.node.slurm_task import SlurmTask

        submitted = 0
        for number, chunk in enumerate(request.chunks, 1):
            executor = submitit.SlurmExecutor(folder=request.folder, max_num_timeout=request.max_requeues,
                                              python=request.python)
            executor.update_parameters(**chunk.parameters, array_parallelism=chunk.parallelism)
            try:
                with executor.batch():
                    made = [executor.submit(SlurmTask(), run_dir, jobs[digest])
                            for digest, run_dir in zip(chunk.hashes, chunk.run_dirs)]
            except (submitit.core.utils.FailedJobError, OSError, subprocess.SubprocessError) as exc:
                raise _refused(request, number, submitted, exc) from None
            report({digest: JobState(State.PENDING, job.job_id) for digest, job in zip(chunk.hashes, made)})
            submitted += len(chunk.hashes)

    def poll(self, records: list[PointRecord]) -> dict[str, JobState]:
        ids = job_ids(records)
        if not ids:
            return {}
        queued, accounted = _queue_and_accounting(ids, self.asking())
        out = {}
        for record in records:
            job_id = record.job_id
            if job_id in queued or job_id in accounted:
                state, elapsed, nodes = queued.get(job_id) or accounted[job_id]
            else:  # sacct has no record (purged, or accounting lag): trust what the node wrote
                node_state = record.rundir.read_state().get("state")
                state = State(node_state) if node_state in (State.COMPLETED, State.FAILED, State.CANCELLED) \
                    else State.UNKNOWN
                elapsed = nodes = None
            out[record.hash] = JobState(state, job_id, elapsed, nodes=nodes)
        return out

    def cancel(self, records: list[PointRecord]) -> list[str]:
        ids = job_ids(records)
        if ids:
            run(["scancel", *ids])
        return [r.hash for r in records if r.job_id]


def _refused(request: SlurmRequest, number: int, submitted: int, exc: Exception) -> BackendError:
    """sbatch refused an array (a QOS or account limit, MaxJobCount, a partition it may not use):
    SLURM's own words, and what was and was not submitted."""
    from workflow.secrets import last_words

    total = sum(len(c.hashes) for c in request.chunks)
    said = last_words(exc)
    hint = (f"{submitted} point(s) in the arrays before it were submitted (status shows them); the other "
            f"{total - submitted} were not: fix the cause, then run the same command again, which submits only those")
    return BackendError(f"sbatch refused array {number} of {len(request.chunks)}",
                        [Problem("<slurm>", "sbatch", "a submission the cluster accepts", said, hint)])


def _share(cap: int, sizes: list[int]) -> list[int]:
    """Split one concurrency cap between chunks, at least 1 each, never more than a chunk's size."""
    total = sum(sizes) or 1
    shares = [max(1, min(size, math.floor(cap * size / total))) for size in sizes]
    spare = cap - sum(shares)
    for i, size in enumerate(sizes):
        while spare > 0 and shares[i] < size:
            shares[i] += 1
            spare -= 1
    return shares


WHOLE_RANGES = {"SLURM_BITSTR_LEN": "0"}  # squeue and sacct print a folded task range whole, never cut off


def _mains(ids: list[str]) -> str:
    """The jobs' array (or job) ids, as squeue and sacct take them: 7_3, 7_4, 9 -> '7,9'."""
    return ",".join(sorted({i.split("_")[0] for i in ids}))


def status_queries(job_ids: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The squeue and the sacct (allocations only, -X) that ``poll`` reads for these jobs."""
    mains = _mains(job_ids)
    return ("squeue", "-h", "-j", mains, "-o", "%i|%T|%M|%N"), ("sacct", "-n", "-X", "-P", "-j", mains, "-o",
                                                              "JobID,State,Elapsed,NodeList")


def start_status_queries(started: Started, job_ids: list[str]) -> None:
    """Start the two queries of a ``poll`` of these jobs now, side by side: ``launch.py status``
    starts them for the ids the manifest's last save left beside it, before it loads the rest."""
    started.start(*status_queries(job_ids), env=WHOLE_RANGES)


def _queue_and_accounting(ids: list[str], started: Started) -> tuple[dict, dict]:
    """One squeue and one sacct for all jobs, run side by side (or read where status started
    them). squeue folds an array's pending tasks into one line (7_[5-999%4]), which is expanded
    here: an array's pending tasks are a few lines, not one a task; sacct folds tasks cancelled
    while pending the same way. A failing sacct (no accounting) leaves the queue's view."""
    squeue, sacct = status_queries(ids)
    start_status_queries(started, ids)
    try:
        accounted = _parse(run(sacct, started, WHOLE_RANGES))
    except BackendError:
        accounted = {}
    return _parse(run(squeue, started, WHOLE_RANGES)), accounted


def _parse(text: str) -> dict[str, tuple[State, float | None, str | None]]:
    """``JobID|State|Elapsed|NodeList`` lines (the nodes: SLURM's compressed list; None before
    it has any: ``None assigned``, ``(None)`` or empty). A folded line of array tasks (7_[5-9%2]:
    squeue's pending tasks, sacct's tasks cancelled while pending) is expanded; a task's own
    line wins."""
    out, folded = {}, {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3:
            continue
        nodes = parts[3].strip() if len(parts) > 3 else ""
        value = (map_state(parts[1]), _seconds(parts[2]), None if not nodes or "None" in nodes else nodes)
        if "[" in parts[0]:
            folded.update(dict.fromkeys(_tasks(parts[0]), value))
        else:
            out[parts[0]] = value
    return {**folded, **out}


def _tasks(folded: str) -> list[str]:
    """'7_[0-3,5%2]' -> ['7_0', '7_1', '7_2', '7_3', '7_5']."""
    main, _, spec = folded.partition("_[")
    out = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        low, _, high = part.partition("-")
        out += [f"{main}_{i}" for i in range(int(low), int(high or low) + 1)]
    return out


@lru_cache(maxsize=4096)
def _seconds(text: str) -> float | None:
    """SLURM durations: [D-]HH:MM:SS, MM:SS or MM:SS.ms."""
    text = text.strip()
    if not text or text in ("INVALID", "UNLIMITED"):
        return None
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def _resource_problems(file: str, points: list[Point], info: ClusterInfo) -> list[Problem]:
    """What the cluster cannot run: more points than its job limits hold, unknown partitions,
    too many GPUs per node."""
    if not info.live:
        return []
    problems = []
    if info.max_job_count and len(points) > info.max_array_size * info.max_job_count:
        problems.append(Problem(file, "max_points", f"at most MaxArraySize {info.max_array_size} x MaxJobCount "
                                f"{info.max_job_count} = {info.max_array_size * info.max_job_count} points on this "
                                "cluster", f"{len(points)} points", "split the sweep, or ask for larger limits"))
    default = next((n for n, p in info.partitions.items() if p["default"]), None)
    for point in points if info.partitions else ():
        name = point.spec.slurm.partition or default
        gpus = point.spec.resources.gpus_per_node
        if name not in info.partitions:
            problem = Problem(file, "slurm.partition", "a partition of this cluster (" +
                              ", ".join(info.partitions) + ")", repr(name), suggest(str(name), info.partitions))
        elif gpus > info.partitions[name]["gpus"]:
            problem = Problem(file, "resources.gpus_per_node",
                              f"at most {info.partitions[name]['gpus']} GPUs per node in partition '{name}'", str(gpus))
        else:
            continue
        if problem not in problems:
            problems.append(problem)
    return problems
