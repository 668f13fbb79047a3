"""The ``ctl`` backend: one ``ctl job run`` per point, in the original cluster CLI's form:

    ctl job run --name <name> --container <image> [--login] [--high-priority]
        --shared-host-dir <dir> [--gpus-type <type>] --gpu <n>
        --command 'bash -c "cd <repo dir>; python3 -m workflow.<seq2seq|clf> --job_file <run dir>/job.json"'

The inner command runs as-is on any machine with the repo; the run directory must be on the
shared host dir. ``ctl`` has no status command we rely on: status comes from what the job
writes into its run directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from workflow.backends.base import Backend, EventHook, JobState, Request
from workflow.errors import BackendError, Problem
from workflow.legacy import MODULES
from workflow.manifest import Manifest, PointRecord
from workflow.paths import PROJECT_ROOT
from workflow.rundir import RunDir
from workflow.states import State

if TYPE_CHECKING:  # annotations only: status and cancel never load the spec machinery
    from workflow.plan import Plan
    from workflow.sweep import Point

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

    def point_tags(self, digest: str) -> dict:
        return {"ctl_job_name": job.name for job in self.jobs if job.hash == digest}


def job_name(sweep: str, point: Point) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", f"{sweep}-{point.index}-{point.hash[:8]}".lower()).strip("-")
    return text[-63:]


def inner_command(spec: dict, run_dir: Path) -> str:
    repo = spec["ctl"]["repo_dir"] or str(PROJECT_ROOT)
    python = f"python3 -m {MODULES[spec['task']]} --job_file {shlex.quote(str(run_dir / 'job.json'))}"
    return f'bash -c "cd {repo}; {python}"'


class CtlBackend(Backend):
    name = "ctl"

    def render(self, plan: Plan, points: list[Point]) -> CtlRequest:
        missing = [p for p in points if not p.spec["ctl"]["container"]]
        if missing:
            raise BackendError("The ctl backend needs a container image", [Problem(
                plan.sweep.file, "ctl.container", "a container image name", "nothing",
                "set ctl.container in the spec, or ctl.container=<image> on the command line")])
        return CtlRequest(tuple(self._job(plan, p) for p in points))

    @staticmethod
    def _job(plan: Plan, point: Point) -> CtlJob:
        spec, ctl, res = point.spec, point.spec["ctl"], point.spec["resources"]
        name = job_name(plan.sweep.name, point)
        argv = ["ctl", "job", "run", "--name", name, "--container", ctl["container"]]
        argv += ["--login"] if ctl["login"] else []
        argv += ["--high-priority"] if ctl["high_priority"] else []
        argv += ["--shared-host-dir", ctl["shared_host_dir"]]
        argv += ["--gpus-type", res["gpu_type"]] if res["gpu_type"] else []
        argv += ["--gpu", str(res["gpus_per_node"])]
        argv += ["--command", inner_command(spec, plan.run_dir(point).root)]
        return CtlJob(point.hash, name, tuple(argv))

    def preflight(self) -> None:
        if shutil.which("ctl") is None:
            raise BackendError("The ctl command is not on PATH", [Problem(
                "<environment>", "PATH", "the ctl cluster CLI", "not found",
                "install ctl, or use --dry_run to see the commands that would run")])

    def submit(self, request: CtlRequest, manifest: Manifest, on_event: EventHook) -> None:
        for job in request.jobs:
            proc = subprocess.run(job.argv, capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S)
            record = manifest.points[job.hash]
            if proc.returncode != 0:
                record.state, record.error = State.FAILED, f"ctl job run failed: {proc.stderr.strip()[:300]}"
            else:
                record.state, record.job_id, record.submitted_at = State.SUBMITTED, job.name, time.time()
                record.extra["ctl_job_name"] = job.name
            manifest.save()
            on_event("submitted", record)

    def poll(self, records: list[PointRecord]) -> dict[str, JobState]:
        out = {}
        for record in records:
            state = RunDir(Path(record.run_dir)).read_state().get("state")
            out[record.hash] = JobState(state if state else record.state, record.job_id)
        return out

    def cancel(self, records: list[PointRecord]) -> list[str]:
        raise BackendError("Cancelling through ctl is not supported", [Problem(
            "<command line>", "cancel", "a backend with a cancel command", "ctl",
            "cancel with ctl itself: " + ", ".join(r.job_id or r.name for r in records))])
