"""A ctl job on its node: ``python -m workflow.seq2seq --job_file <run dir>/job.json`` runs the one
job entry, loads nothing of the launcher, and handles USR2 like a local job (a checkpoint, the
state PREEMPTED, and a re-run that resumes into the same MLflow run)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli
from local_preemption import _wait

pytestmark = pytest.mark.integration

SPEC = {"base": str(ROOT / "jobs/demo.yaml"), "backend": "ctl",
        "resources": {"gpus_per_node": 0}, "ctl": {"container": "registry/t5:latest"}}
# ``python -m workflow.seq2seq ARGS`` that writes the names of the loaded modules when the job
# leaves (os._exit, which skips finalization, or a plain exit).
MODULES_AT_EXIT = """
import atexit, json, os, runpy, sys
out, leave = sys.argv.pop(1), os._exit
def record():
    open(out, "w").write(json.dumps(sorted(sys.modules)))
def record_and_leave(code):
    record()
    leave(code)
os._exit = record_and_leave
atexit.register(record)
runpy.run_module("workflow.seq2seq", run_name="__main__", alter_sys=True)
"""


def submit_to_fake_ctl(env: dict, tmp_path: Path, train: dict) -> tuple[str, Path]:
    """``launch.py run`` on the ctl backend with a stand-in ``ctl`` that only records its
    arguments: the prepared run directory, and the command the cluster would run on the node."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ctl"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(tmp_path / 'ctl.json')!r}, 'w')"
                    ".write(json.dumps(sys.argv[1:]))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    spec = tmp_path / "ctljob.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "train": train, "ctl": {**SPEC["ctl"], "shared_host_dir": str(tmp_path)}}))
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    result = run_cli("run", str(spec), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    args = json.loads((tmp_path / "ctl.json").read_text())
    record = next(iter(json.loads((tmp_path / "runs/ctljob/manifest.json").read_text())["points"].values()))
    return args[args.index("--command") + 1], Path(record["run_dir"])


def node_argv(command: str) -> tuple[str, list[str]]:
    """The working directory and argv of the ctl command ``bash -c "cd <dir>; python3 -m ..."``."""
    cd, python = shlex.split(command)[2].split("; ", 1)
    return cd.removeprefix("cd "), shlex.split(python)


def test_a_job_file_run_loads_no_launcher_module(env, tmp_path):
    command, run_dir = submit_to_fake_ctl(env, tmp_path, {"max_steps": 10, "eval_steps": 10, "save_steps": 10,
                                                          "logging_steps": 5})
    cwd, argv = node_argv(command)
    assert argv[:3] == ["python3", "-m", "workflow.seq2seq"] and argv[3] == "--job_file", argv
    modules = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", MODULES_AT_EXIT, str(modules), *argv[3:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((run_dir / "state.json").read_text())["state"] == "COMPLETED"
    loaded = json.loads(modules.read_text())
    assert "torch" in loaded and "workflow.node.finetune_seq2seq" in loaded  # written at the end of the job
    assert [m for m in loaded if m.startswith(("rich", "workflow.launch"))] == []


def test_usr2_to_a_ctl_job_checkpoints_and_a_rerun_resumes_into_the_same_run(env, tmp_path):
    command, run_dir = submit_to_fake_ctl(env, tmp_path, {"max_steps": 100, "save_steps": 5000, "eval_steps": 5000,
                                                          "logging_steps": 10})
    log = tmp_path / "ctl-node.log"
    with log.open("w") as out:  # the node's output, as ctl would keep it
        job = subprocess.Popen(["bash", "-c", command], env=env, stdout=out, stderr=subprocess.STDOUT)
    _wait(lambda: "step 20/" in log.read_text(), 600, job)
    os.kill(json.loads((run_dir / "state.json").read_text())["pid"], signal.SIGUSR2)
    assert job.wait(timeout=600) != 0
    first = json.loads((run_dir / "state.json").read_text())
    assert first["state"] == "PREEMPTED" and first["preemptions"] == 1, first
    assert "preemption requested at step" in log.read_text()
    saved = max(int(p.parent.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*/.complete"))
    assert 20 <= saved < 100
    assert "PREEMPTED" in run_cli("status", "ctljob", env=env).stdout

    again = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{saved}'}" in again.stdout, again.stdout[-3000:]
    second = json.loads((run_dir / "state.json").read_text())
    assert second["state"] == "COMPLETED" and second["mlflow_run_id"] == first["mlflow_run_id"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(first["mlflow_run_id"], "loss")]
    assert steps == list(range(10, 101, 10)), "the step count continues; no metric lost or repeated"
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags.get("preemptions") == "1"
