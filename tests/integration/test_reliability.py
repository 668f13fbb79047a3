"""Reliability and security: tracking outages against a real MLflow server, stale runs,
planted secrets, failure reports, --fail_fast and checkpoint safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli
from mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

SECRETS = {"HF_TOKEN": "hf_PLANTEDtoken123", "AWS_SECRET_ACCESS_KEY": "PLANTEDaws4567",
           "MLFLOW_TRACKING_PASSWORD": "PLANTEDmlf789", "MY_SERVICE_API_KEY": "PLANTEDkey000",
           "DB_PASSWORD": "PLANTEDdb1111", "GITHUB_TOKEN": "ghp_PLANTED2222"}


def spec_file(tmp_path: Path, name: str, **over) -> Path:
    body = {"base": str(ROOT / "jobs/demo.yaml"), **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def spool_metrics(run_dir: Path) -> list[tuple[str, int, float]]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return sorted((r["key"], r["step"], r["value"]) for r in rows if r["kind"] == "metric")


def mlflow_metrics(uri: str, run_id: str) -> list[tuple[str, int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    out = []
    for key in client.get_run(run_id).data.metrics:
        out += [(key, m.step, m.value) for m in client.get_metric_history(run_id, key)]
    return sorted(out)


def only_record(tmp_path: Path, sweep: str) -> dict:
    return next(iter(json.loads((tmp_path / f"runs/{sweep}/manifest.json").read_text())["points"].values()))


def test_server_down_before_the_run_then_synced(env, tmp_path):
    server = MlflowServer(tmp_path / "server", free_port())
    env = {**env, "MLFLOW_TRACKING_URI": server.uri}
    result = run_cli("run", str(spec_file(tmp_path, "down", train={"max_steps": 40, "logging_steps": 5,
                                                                  "eval_steps": 20, "save_steps": 40})), env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "MLflow" in result.stderr and "retried" in result.stderr  # warned, not failed
    record = only_record(tmp_path, "down")
    run_dir = Path(record["run_dir"])
    assert json.loads((run_dir / "state.json").read_text())["state"] == "COMPLETED"
    spooled = spool_metrics(run_dir)
    assert [step for key, step, _ in spooled if key == "loss"][-1] == 40, "the spool holds the loss up to the last step"

    server.start()
    try:
        synced = run_cli("sync", "down", env=env)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        record = only_record(tmp_path, "down")
        assert mlflow_metrics(server.uri, record["mlflow_run_id"]) == spooled, "no metric point may be lost"
        from mlflow.tracking import MlflowClient

        run = MlflowClient(server.uri).get_run(record["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["point_hash"] == record["hash"]
        assert run.data.params["train.max_steps"] == "40"
        # the parent run, never registered during the outage, is created by sync and adopts the run
        parent = json.loads((tmp_path / "runs/down/manifest.json").read_text())["parent_run_id"]
        assert parent and run.data.tags["mlflow.parentRunId"] == parent
        parent_run = MlflowClient(server.uri).get_run(parent)
        assert parent_run.data.tags["sweep_id"] == run.data.tags["sweep_id"]
        assert parent_run.info.status == "FINISHED" and parent_run.data.tags["points.COMPLETED"] == "1"
    finally:
        server.kill()


def test_server_killed_mid_run_loses_no_metric(env, tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    env = {**env, "MLFLOW_TRACKING_URI": server.uri}
    path = spec_file(tmp_path, "midrun", train={"max_steps": 600, "logging_steps": 5, "eval_steps": 100,
                                                "save_steps": 600})
    proc = subprocess.Popen([sys.executable, "launch.py", "run", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        spool = None
        while time.time() < deadline:
            found = list((tmp_path / "runs/midrun").glob("midrun-*/metrics.jsonl"))
            if found and "\"step\": 100" in found[0].read_text():
                spool = found[0]
                break
            time.sleep(0.5)
        assert spool is not None, "training did not start"
        server.kill()
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = spool.parent
    assert json.loads((run_dir / "state.json").read_text())["state"] == "COMPLETED"
    spooled = spool_metrics(run_dir)
    assert max(step for _, step, _ in spooled) == 600
    server.start()
    try:
        status = run_cli("status", "midrun", env=env)  # the next contact syncs automatically
        assert status.returncode == 0, status.stderr
        record = only_record(tmp_path, "midrun")
        assert mlflow_metrics(server.uri, record["mlflow_run_id"]) == spooled, "no metric point may be lost"
    finally:
        server.kill()


def test_sigkilled_job_is_not_left_running(env, tmp_path):
    path = spec_file(tmp_path, "killed", train={"max_steps": 20000, "save_steps": 20000, "eval_steps": 20000})
    launcher = subprocess.Popen([sys.executable, "launch.py", "run", str(path)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest = tmp_path / "runs/killed/manifest.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if manifest.exists():
            record = only_record(tmp_path, "killed")
            state = Path(record["run_dir"], "state.json")
            if record.get("job_id") and state.exists() and "RUNNING" in state.read_text():
                break
        time.sleep(0.5)
    os.killpg(launcher.pid, signal.SIGKILL)  # the launcher dies first: nobody sees the job end
    os.killpg(int(record["job_id"].split(":")[1]), signal.SIGKILL)
    launcher.wait()
    time.sleep(1)
    status = run_cli("status", "killed", env=env)
    assert status.returncode == 0 and "FAILED" in status.stdout, status.stdout + status.stderr
    from mlflow.tracking import MlflowClient

    record = only_record(tmp_path, "killed")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    assert client.get_run(record["mlflow_run_id"]).info.status == "FAILED"
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert all(r.info.status != "RUNNING" for r in runs), [r.info.status for r in runs]


def test_sigterm_stops_a_local_sweep_as_ctrl_c_does(env, tmp_path):
    """SIGTERM (a login node's clean-up, `timeout`) to the launcher while its first point trains:
    the point's process ends with it, the points that waited are cancelled, the manifest and every
    MLflow run end in a final state, and nothing logs a traceback."""
    base = spec_file(tmp_path, "base", train={"max_steps": 20000, "save_steps": 20000, "eval_steps": 20000})
    sweep = tmp_path / "stop.yaml"
    sweep.write_text(yaml.safe_dump({"base": str(base), "name": "stop", "grid": {"train.seed": [1, 2, 3]}}))
    launcher = subprocess.Popen([sys.executable, "launch.py", "sweep", str(sweep)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, running = time.time() + 300, None
    while time.time() < deadline and running is None:
        time.sleep(0.5)
        records = json.loads(m.read_text())["points"].values() if (m := tmp_path / "runs/stop/manifest.json").exists() \
            else []
        running = next((r for r in records if r.get("job_id") and (state := Path(r["run_dir"], "state.json")).exists()
                        and "RUNNING" in state.read_text()), None)
    assert running, "the first point never started"
    launcher.send_signal(signal.SIGTERM)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, out + err
    assert "Traceback" not in out + err and "stopped" in err, err
    pid = int(running["job_id"].split(":")[1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    records = json.loads((tmp_path / "runs/stop/manifest.json").read_text())["points"].values()
    assert sorted(r["state"] for r in records) == ["CANCELLED"] * 3
    assert "Traceback" not in Path(running["run_dir"], "log.txt").read_text()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]


def test_planted_secrets_appear_nowhere(env, tmp_path):
    env = {**env, **SECRETS}
    outputs = []
    path = spec_file(tmp_path, "secret", train={"max_steps": 10, "eval_steps": 5, "save_steps": 5,
                                                "logging_steps": 5},
                     slurm={"setup": ["echo setup"]}, ctl={"container": "img", "shared_host_dir": str(tmp_path)})
    for args in (["run", str(path)], ["run", str(path), "--backend", "slurm", "--dry_run"],
                 ["run", str(path), "--backend", "ctl", "--dry_run"], ["status", "secret"], ["logs", "secret"],
                 ["compare", "secret"], ["sync", "secret"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        outputs.append(result.stdout + result.stderr)
    bad = subprocess.run([sys.executable, "-m", "workflow.seq2seq", "--bogus", SECRETS["HF_TOKEN"][:3]],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    outputs.append(bad.stdout + bad.stderr)
    files = [p for root in (tmp_path / "runs", tmp_path / "mlflow") for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10
    for name, value in SECRETS.items():
        for text in outputs:
            assert value not in text, name
        for file in files:
            assert value.encode() not in file.read_bytes(), (name, file)


def test_failures_are_reported_and_other_points_go_on(env, tmp_path, own_mount):
    env = {**env, "WF_MOUNT_DIR": str(own_mount)}
    broken = own_mount / "models/broken-t5"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text((own_mount / "models/tiny-t5/config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    sweep = tmp_path / "fail.yaml"
    sweep.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "fail",
                                     "overrides": {"train.max_steps": 10, "train.eval_steps": 5,
                                                   "train.save_steps": 5},
                                     "points": [{"model_init_name": "broken-t5"}, {"model_init_name": "tiny-t5"}]}))
    result = run_cli("sweep", str(sweep), env=env)
    assert result.returncode != 0 and "1 point(s) failed" in result.stderr
    states = {r["name"]: r for r in json.loads((tmp_path / "runs/fail/manifest.json").read_text())["points"].values()}
    assert states["model_init_name=broken-t5"]["state"] == "FAILED"
    assert states["model_init_name=tiny-t5"]["state"] == "COMPLETED", "the other points go on"
    error = states["model_init_name=broken-t5"]["error"]
    assert error and error.split(":")[0].endswith(("Error", "Exception")), error
    status = run_cli("status", "fail", env=env)
    assert error.split(":")[0] in status.stdout
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}").get_run(
        states["model_init_name=broken-t5"]["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith(error.split(":")[0])
    assert "error_tail" in run.data.tags

    fast = tmp_path / "fast.yaml"
    fast.write_text(sweep.read_text().replace("name: fail", "name: fast"))
    result = run_cli("sweep", str(fast), "--fail_fast", env=env)
    states = {r["name"]: r for r in json.loads((tmp_path / "runs/fast/manifest.json").read_text())["points"].values()}
    assert states["model_init_name=broken-t5"]["state"] == "FAILED"
    assert states["model_init_name=tiny-t5"]["state"] == "PLANNED", "--fail_fast stops the sweep"


def test_a_partial_checkpoint_is_never_resumed(env, tmp_path):
    path = spec_file(tmp_path, "ckpt", train={"max_steps": 12, "save_steps": 4, "eval_steps": 4,
                                              "logging_steps": 4, "save_total_limit": 2})
    assert run_cli("run", str(path), env=env).returncode == 0
    run_dir = Path(only_record(tmp_path, "ckpt")["run_dir"])
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-12", "checkpoint-8"]
    newest = run_dir / "checkpoints/checkpoint-12"
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a kill during the save: truncated, never marked complete
    (newest / ".complete").unlink()
    job = json.loads((run_dir / "job.json").read_text())
    job["spec"]["train"]["max_steps"] = 16
    (run_dir / "job.json").write_text(json.dumps(job))
    done = subprocess.run([sys.executable, "-m", "workflow.node.run", str(run_dir)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "resuming from" in done.stdout and "checkpoint-8" in done.stdout.split("resuming from")[1].splitlines()[0]
    assert "step 12/16" in done.stdout and "step 16/16" in done.stdout
