"""What a command starts early is one value, ``Started``, that the command line makes and passes
on: the programs it holds are read by the code given it, once. Programs are faked at the
subprocess boundary: nothing here runs git or SLURM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # launch.py, beside workflow/

import launch  # noqa: E402
from workflow.errors import BackendError  # noqa: E402
from workflow.launch import early, lifecycle, manifest as manifests, snapshot  # noqa: E402
from workflow.launch.backends import slurm  # noqa: E402
from workflow.launch.early import Started  # noqa: E402
from workflow.launch.manifest import Manifest, PointRecord  # noqa: E402
from workflow.launch.plan import make_plan  # noqa: E402
from workflow.launch.proc import communicate  # noqa: E402
from workflow.launch.sweep import expand  # noqa: E402


class FakeProgram:
    """A stand-in for subprocess.Popen: answers from ``answers`` (by the program's first words),
    and records every start in ``started``."""

    answers: dict[tuple[str, ...], tuple[int, str, str]] = {}
    started: list[FakeProgram] = []
    hangs: set[str] = set()

    def __init__(self, argv, cwd=None, env=None, **_):
        self.argv, self.env, self.returncode, self.killed, self.reads = tuple(argv), env, None, False, 0
        self.started.append(self)

    def _answer(self) -> tuple[int, str, str]:
        for words, answer in self.answers.items():
            if self.argv[:len(words)] == words:
                return answer
        return 0, "", ""

    def communicate(self, text=None, timeout=None):
        self.reads += 1
        if self.argv[0] in self.hangs and not self.killed:
            raise subprocess.TimeoutExpired(list(self.argv), timeout)
        self.returncode, out, err = (-9, "", "") if self.killed else self._answer()
        return out, err

    def kill(self):
        self.killed = True


@pytest.fixture
def programs(monkeypatch):
    monkeypatch.setattr(FakeProgram, "answers", {})
    monkeypatch.setattr(FakeProgram, "started", [])
    monkeypatch.setattr(FakeProgram, "hangs", set())
    monkeypatch.setattr(early.subprocess, "Popen", FakeProgram)
    monkeypatch.setattr(slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    FakeProgram.answers.update({("scontrol",): (0, "MaxArraySize = 3\nMaxJobCount = 50\n", ""),
                                ("sinfo",): (0, "debug*|gpu:4\n", "")})
    return FakeProgram


def names(programs) -> list[str]:
    return [p.argv[0] for p in programs.started]


def test_a_program_is_started_once_and_its_answer_read_once(programs):
    started = Started()
    started.start(("git", "status"), ("sinfo",))
    started.start(("git", "status"))  # already under way
    programs.answers[("git",)] = (0, "clean\n", "")
    assert started.answer(("git", "status"), 5).out == "clean\n"
    assert started.answer(("git", "status"), 5).out == "clean\n"  # kept: not asked again
    assert names(programs) == ["git", "sinfo"]
    assert started.answer(("scontrol", "show", "config"), 5).ok  # not started early: run when asked
    assert names(programs) == ["git", "sinfo", "scontrol"]


def test_programs_nobody_read_are_killed_and_reaped_when_the_command_ends(programs):
    with Started() as started:
        started.start(("squeue",), ("sacct",))
        started.answer(("squeue",), 5)
    squeue, sacct = programs.started
    assert not squeue.killed and sacct.killed and sacct.reads == 1


def test_a_program_that_does_not_answer_in_time_is_killed_and_reaped(programs):
    programs.hangs.add("sacct")
    proc = early.subprocess.Popen(["sacct"])
    assert communicate(proc, 0.01) is None and proc.killed and proc.reads == 2
    assert Started().answer(("sacct",), 0.01).returncode is None
    with pytest.raises(BackendError, match="sacct did not answer"):
        slurm.run(["sacct"])


def sweep_file(tmp_path: Path, monkeypatch, backend: str) -> Path:
    """A 5-point sweep over a hand-made model folder and data file (no model is built)."""
    mount = tmp_path / "mount"
    (mount / "models/m").mkdir(parents=True)
    (mount / "models/m/config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    (mount / "data").mkdir()
    record = {"prompt": "a", "completion": "b"}
    (mount / "data/d.json").write_text(json.dumps({"train": [record] * 4, "eval": [record]}))
    monkeypatch.setenv("WF_MOUNT_DIR", str(mount))
    monkeypatch.setenv("WF_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"model_init_name": "m", "data_name": "d.json",
                                                        "backend": backend}))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "name": "unit", "grid": {"train.seed": list(range(5))}}))
    return path


def test_the_slurm_backend_given_the_commands_started_reads_the_clusters_limits_once(programs, tmp_path,
                                                                                   monkeypatch):
    """The plan checks the cluster's limits and the request is rendered for them: one scontrol
    and one sinfo, side by side, for both, through the command's ``Started``."""
    sweep = expand(sweep_file(tmp_path, monkeypatch, "slurm"))
    started = Started()
    plan = make_plan(sweep, cluster=started)
    assert sorted(names(programs)) == ["scontrol", "sinfo"]
    request = slurm.SlurmBackend(started).render(plan, sweep.points)
    assert request.max_array_size == 3 and [len(c.hashes) for c in request.chunks] == [3, 2]
    assert slurm.SlurmBackend(started).problems(sweep.file, sweep.points) == []
    assert sorted(names(programs)) == ["scontrol", "sinfo"], "asked again"
    slurm.SlurmBackend().render(plan, sweep.points)  # given none, a backend asks for itself
    assert len(programs.started) == 4


def test_validate_and_plan_start_nothing(programs, tmp_path, monkeypatch):
    """Only sweep and run start programs early, and only a plan made for a launch (given where
    to ask) asks the cluster; validate, plan and the lifecycle commands ask nothing early."""
    for argv in (["validate", "s.yaml"], ["plan", "s.yaml"], ["logs", "unit"], ["list"], ["schema"], []):
        launch.start_early(argv)
        assert programs.started == [], argv
    make_plan(expand(sweep_file(tmp_path, monkeypatch, "slurm")))
    assert programs.started == []


def test_the_snapshot_reads_the_git_commands_started_for_it(programs, tmp_path, monkeypatch):
    (tmp_path / "workflow").mkdir()
    (tmp_path / "workflow/a.py").write_text("A = 1\n")
    (tmp_path / "setup.cfg").write_text("[metadata]\n")
    monkeypatch.setattr(snapshot, "PROJECT_ROOT", tmp_path)
    git = ("git", "-c", f"safe.directory={tmp_path}")
    programs.answers.update({(*git, "ls-files"): (0, "workflow/a.py\nsetup.cfg\n", ""),
                             (*git, "rev-parse"): (0, "f" * 40 + "\n", "")})
    started = launch.start_early(["sweep", "sweeps/lr.yaml"])
    assert sorted(p.argv[3] for p in programs.started) == ["ls-files", "rev-parse", "status"]
    taken = snapshot.take(tmp_path / "sweep", started=started)
    assert len(programs.started) == 3, "git run again"
    assert taken.commit == "f" * 40 and taken.files == ("setup.cfg", "workflow/a.py") and not taken.dirty
    assert snapshot.take(tmp_path / "sweep").root == taken.root and len(programs.started) == 6


def test_status_starts_the_saved_jobs_queries_and_its_poll_reads_them(programs, tmp_path, monkeypatch):
    monkeypatch.setenv("WF_RUNS_DIR", str(tmp_path / "runs"))
    manifest = Manifest("pre", "pre.yaml")
    for i in range(2):
        manifest.points[f"h{i}"] = PointRecord(index=i, name=f"p{i}", hash=f"h{i}", run_dir=str(tmp_path / f"p{i}"),
                                               state="PENDING", backend="slurm", job_id=f"7_{i}")
    manifest.save()  # beside it, the job ids a status asks about
    programs.answers.update({("squeue",): (0, "7_1|RUNNING|0:10\n", ""),
                             ("sacct",): (0, "7_0|COMPLETED|00:01:00\n", "")})
    started = launch.start_early(["status", "pre", "--all"])
    assert [p.argv[:4] for p in programs.started] == [("squeue", "-h", "-j", "7"), ("sacct", "-n", "-X", "-P")]
    assert all(p.env["SLURM_BITSTR_LEN"] == "0" for p in programs.started)  # folded task ranges come whole
    refreshed = lifecycle.refresh(manifests.load("pre"), started)
    assert {r.name: r.state for r in refreshed.points.values()} == {"p0": "COMPLETED", "p1": "RUNNING"}
    assert len(programs.started) == 2, "status asked again"
    launch.start_early(["status", "no-such-sweep"])  # status reports that one
    assert len(programs.started) == 2
