"""The ``ctl`` backend: one ``ctl job run`` per point, in the original cluster CLI's form:

    ctl job run --name <name> --container <image> [--login] [--high-priority]
        --shared-host-dir <dir> [--gpus-type <type>] --gpu <n>
        --command 'bash -c "cd <code>; python3 -m workflow.<seq2seq|clf> --job_file <run dir>/job.json"'

The inner command runs the task's original command line from the sweep's code snapshot (or
``ctl.repo_dir``, where the repo lives inside the container, when set); the run directory and
the snapshot must be under ``ctl.shared_host_dir``, and a job is one container on one node
(``ctl job run`` has no nodes flag): both are refused before anything is written. ``ctl`` has
no status command we rely on: status comes from what the job writes into its run directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from workflow.errors import BackendError, Problem
from workflow.launch.backends.base import Backend, JobState, Report, Request, refuse
from workflow.launch.manifest import sweep_dir
from workflow.paths import PROJECT_ROOT
from workflow.states import State

if TYPE_CHECKING:  # annotations only: status and cancel never load the spec machinery
    from workflow.launch.manifest import PointRecord
    from workflow.launch.plan import Plan
    from workflow.launch.sweep import Point, Sweep

SUBMIT_TIMEOUT_S = 120


@dataclass(frozen=True)
class CtlJob:
    hash: str
    name: str
    argv: tuple[str, ...]

    @property
    def inner(self) -> str:
        """The --command value: a shell command line."""
        return self.argv[self.argv.index("--command") + 1]


@dataclass(frozen=True)
class CtlRequest(Request):
    jobs: tuple[CtlJob, ...]

    def describe(self) -> str:
        lines = [f"# ctl backend: {len(self.jobs)} job(s)"]
        lines += [shlex.join(job.argv) for job in self.jobs]
        return "\n".join(lines)


def job_name(sweep: str, point: Point) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", f"{sweep}-{point.index}-{point.hash[:8]}".lower()).strip("-")
    return text[-63:]


def inner_command(plan: Plan, point: Point) -> str:
    repo = point.spec.ctl.repo_dir or str(plan.code.root if plan.code else PROJECT_ROOT)
    job_file = shlex.quote(str(plan.run_dir(point).job))
    return f'bash -c "cd {repo}; python3 -m {point.spec.task_info.command} --job_file {job_file}"'


class CtlBackend(Backend):
    name = "ctl"

    def rules(self, sweep: Sweep) -> list[Problem]:
        return (_container(sweep.file, sweep.points) + _one_node(sweep.file, sweep.points)
                + _on_shared_dir(sweep))

    def render(self, plan: Plan, points: list[Point]) -> CtlRequest:
        refuse(f"The ctl backend cannot run {plan.sweep.file}", self.rules(plan.sweep))
        return CtlRequest(tuple(self._job(plan, p) for p in points))

    @staticmethod
    def _job(plan: Plan, point: Point) -> CtlJob:
        ctl, res = point.spec.ctl, point.spec.resources
        name = job_name(plan.sweep.name, point)
        argv = ["ctl", "job", "run", "--name", name, "--container", ctl.container]
        argv += ["--login"] if ctl.login else []
        argv += ["--high-priority"] if ctl.high_priority else []
        argv += ["--shared-host-dir", ctl.shared_host_dir]
        argv += ["--gpus-type", res.gpu_type] if res.gpu_type else []
        argv += ["--gpu", str(res.gpus_per_node)]
        argv += ["--command", inner_command(plan, point)]
        return CtlJob(point.hash, name, tuple(argv))

    def preflight(self) -> None:
        if shutil.which("ctl") is None:
            raise BackendError("The ctl command is not on PATH", [Problem(
                "<environment>", "PATH", "the ctl cluster CLI", "not found",
                "install ctl, or use --dry_run to see the commands that would run")])

    def schedule(self, request: CtlRequest, report: Report, jobs: dict[str, dict]) -> None:
        for job in request.jobs:
            proc = subprocess.run(job.argv, capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S)
            if proc.returncode != 0:
                report({job.hash: JobState(State.FAILED, error=f"ctl job run failed: {proc.stderr.strip()[:300]}")})
            else:
                report({job.hash: JobState(State.SUBMITTED, job.name)})

    def poll(self, records: list[PointRecord]) -> dict[str, JobState]:
        return {r.hash: JobState(State(r.rundir.read_state().get("state") or r.state), r.job_id) for r in records}

    def cancel(self, records: list[PointRecord]) -> list[str]:
        raise BackendError("Cancelling through ctl is not supported", [Problem(
            "<command line>", "cancel", "a backend with a cancel command", "ctl",
            "cancel with ctl itself: " + ", ".join(r.job_id or r.name for r in records))])


def _container(file: str, points: list[Point]) -> list[Problem]:
    if all(p.spec.ctl.container for p in points):
        return []
    return [Problem(file, "ctl.container", "a container image name", "nothing",
                    "set ctl.container in the spec, or ctl.container=<image> on the command line")]


def _one_node(file: str, points: list[Point]) -> list[Problem]:
    """``ctl job run`` starts one container: its --gpu counts that container's GPUs."""
    nodes = max((p.spec.resources.nodes for p in points), default=1)
    if nodes <= 1:
        return []
    gpus = max(p.spec.resources.gpus_per_node for p in points)
    return [Problem(file, "resources.nodes", "1 with the ctl backend (ctl job run starts one container "
                    "on one node; it has no nodes flag)", str(nodes),
                    f"use --backend slurm for {nodes} nodes, or resources.nodes=1 to run on one node "
                    f"(--gpu {gpus})")]


def _on_shared_dir(sweep: Sweep) -> list[Problem]:
    """The run folders (and the code snapshot, under the sweep's folder too) must be under each
    point's ``ctl.shared_host_dir``: the job reads and writes them from inside its container."""
    root, problems = sweep_dir(sweep.name), []
    for shared in dict.fromkeys(p.spec.ctl.shared_host_dir for p in sweep.points):
        if _under(root, shared):
            continue
        snapshot = any(not p.spec.ctl.repo_dir for p in sweep.points if p.spec.ctl.shared_host_dir == shared)
        what = "run folders and code snapshot" if snapshot else "run folders"
        problems.append(Problem(
            sweep.file, "ctl.shared_host_dir", f"a folder that holds the sweep's {what} ({root}): "
            "a ctl job sees only the shared host dir", f"{shared!r}, which {root} is not under",
            f"set ctl.shared_host_dir to a folder above {root}, or WF_RUNS_DIR to a folder under {shared}"))
    return problems


def _under(path: os.PathLike, folder: str) -> bool:
    """True if ``path`` is ``folder`` or inside it, as written or with links resolved."""
    path, top = Path(os.path.abspath(path)), Path(os.path.abspath(os.path.expanduser(folder)))
    return path.is_relative_to(top) or path.resolve().is_relative_to(top.resolve())
