"""A finished 2-point local sweep as a researcher sees it: true run times in MLflow, a parent run
that summarises the sweep, only the params that matter, quiet point logs, compare in the tool's
states and numbers, tables that fit 80 columns, and the printed links in the real MLflow UI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, cli_env, run_cli

FAST = {"train.max_steps": 10, "train.eval_steps": 10, "train.save_steps": 10, "train.logging_steps": 5}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, mount):
    """A 2-point local sweep, then `status` and `sync` after it ended."""
    tmp = tmp_path_factory.mktemp("view")
    env = cli_env(tmp, mount)
    sweep = tmp / "view.yaml"
    sweep.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "view", "overrides": FAST,
                                     "grid": {"train.learning_rate": [3e-3, 1e-2]}}))
    result = run_cli("sweep", str(sweep), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = json.loads((tmp / "runs/view/manifest.json").read_text())
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow/mlflow.db'}")
    before = {r["mlflow_run_id"]: client.get_run(r["mlflow_run_id"]).info for r in manifest["points"].values()}
    for command in ("status", "sync"):
        assert run_cli(command, "view", env=env).returncode == 0
    return env, tmp, manifest, client, before, result


def test_child_runs_start_and_end_with_their_jobs_and_stay_closed(swept):
    _, _, manifest, client, before, _ = swept
    for record in manifest["points"].values():
        state = json.loads(Path(record["run_dir"], "state.json").read_text())
        info = client.get_run(record["mlflow_run_id"]).info
        assert abs(info.start_time / 1000 - state["started_at"]) < 2, "the run starts when its job starts"
        assert abs(info.end_time / 1000 - state["ended_at"]) < 2, "the run ends when its job ends"
        assert (info.start_time, info.end_time) == (before[info.run_id].start_time, before[info.run_id].end_time), \
            "status and sync do not close a finished run again"
    starts = sorted(client.get_run(r["mlflow_run_id"]).info.start_time for r in manifest["points"].values())
    assert starts[1] - starts[0] > 1000, "points run one after the other: their runs do not share a start"


def test_the_parent_run_summarises_the_sweep(swept):
    _, _, manifest, client, _, _ = swept
    parent = client.get_run(manifest["parent_run_id"])
    finals = {h: json.loads(Path(r["run_dir"], "eval_results.json").read_text()) for h, r in manifest["points"].items()}
    best = min(finals, key=lambda h: (-finals[h]["exact_match"], finals[h]["best_eval_loss"]))
    assert parent.data.tags["best_point_hash"] == best
    assert parent.data.tags["best_point"] == manifest["points"][best]["name"]
    assert parent.data.tags["points"] == "2" and parent.data.tags["points.COMPLETED"] == "2"
    assert parent.data.metrics["exact_match"] == finals[best]["exact_match"]
    assert parent.data.metrics["best_eval_loss"] == pytest.approx(finals[best]["best_eval_loss"])
    ends = max(json.loads(Path(r["run_dir"], "state.json").read_text())["ended_at"] for r in manifest["points"].values())
    assert parent.info.status == "FINISHED" and abs(parent.info.end_time / 1000 - ends) < 2


def test_params_are_the_task_and_backend_ones_and_the_spec_artifact_has_all(swept):
    _, tmp, manifest, client, _, _ = swept
    record = next(iter(manifest["points"].values()))
    run = client.get_run(record["mlflow_run_id"])
    blocks = {k.split(".")[0] for k in run.data.params}
    assert {"train", "generate", "resources", "local"} <= blocks
    assert not blocks & {"classifier", "slurm", "ctl", "lora"}, blocks
    assert run.data.tags["sweep.varying"] == "train.learning_rate"
    spec = yaml.safe_load(Path(record["run_dir"], "spec.yaml").read_text())
    assert {"classifier", "slurm", "ctl"} <= set(spec), "every resolved key stays in the spec artifact"
    assert {"spec.yaml", "log.txt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.tags["model.path"] == str(Path(record["run_dir"], "model"))
    view = client.get_experiment(manifest["experiment_id"]).tags[f"mlflow.sharedViewState.sweep-{manifest['sweep_id']}"]
    assert "params.`train.learning_rate`" in json.loads(json.loads(view)["state"])["selectedColumns"]


def test_point_logs_are_one_line_per_step_without_library_noise(swept):
    _, _, manifest, _, _, _ = swept
    log = Path(next(iter(manifest["points"].values()))["run_dir"], "log.txt").read_text()
    assert log.count("step 5/10  loss") == 1 and log.count("step 10/10  loss") == 1
    for noise in ("{'loss'", "it/s]", "FutureWarning", "gradient_checkpointing", "Setting accelerator",
                  "compilers.C.base", "JAX version"):
        assert noise not in log, noise


def test_compare_speaks_the_tools_states_and_numbers(swept):
    env, tmp, _, _, _, _ = swept
    result = run_cli("compare", "view", env=env)
    assert result.returncode == 0, result.stderr
    assert "COMPLETED" in result.stdout and "FINISHED" not in result.stdout
    assert "3e-3" in result.stdout and "0.003" not in result.stdout, "the same number format as the point names"
    wrong = run_cli("compare", "view", "--metric", "exact_mach", env=env)
    assert wrong.returncode != 0 and "did you mean 'exact_match'?" in wrong.stderr
    assert wrong.stderr.count("best_eval_loss") <= 1, "the valid metrics are listed once at most"
    nowhere = run_cli("compare", "view", "--csv", str(tmp / "no/such/dir/x.csv"), env=env)
    assert nowhere.returncode != 0 and "Traceback" not in nowhere.stderr and "--csv" in nowhere.stderr


@pytest.mark.parametrize("width", [80, 200])
def test_plan_status_and_compare_fit_the_terminal(swept, width):
    env = {**swept[0], "COLUMNS": str(width)}
    plan = run_cli("plan", "jobs/flan-t5-xxl-zero3-2x8.yaml", env=env)
    assert plan.returncode == 0, plan.stderr
    rows = [line for line in plan.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 6, "one line per setup: no row wraps\n" + plan.stdout
    assert "ZeRO-3 (chosen)" in plan.stdout
    for command in (("plan", "jobs/flan-t5-xxl-zero3-2x8.yaml"), ("status", "view"), ("compare", "view"),
                    ("sweep", "sweeps/decoding.yaml", "--dry_run")):
        out = run_cli(*command, env=env).stdout
        lines = [line for line in out.split("backend request")[0].splitlines()  # the request is what runs, verbatim
                 if "http://" not in line and "launch.py ui" not in line]  # links and commands to copy are never cut
        assert max(len(line) for line in lines) <= width, (command, out)


def test_the_printed_links_open_the_sweeps_training_runs_in_the_real_ui(swept, tmp_path):
    """The MLflow UI the sweep's output names, rendered by headless Chromium: the runs link lands
    on the model-training runs of this sweep, whose parent names the best point and metric; the
    compare link selects every child."""
    import shutil
    import subprocess

    from mlflow_server import MlflowServer

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium here (.ci/run installs it)")
    env, tmp, manifest, _, _, result = swept
    runs_link = re.search(r"runs:\s+(http://\S+)", result.stdout).group(1)
    compare_link = re.search(r"compare:\s+(http://\S+)", result.stdout).group(1)
    assert "python launch.py ui --port 5000" in result.stdout
    server = MlflowServer(tmp / "mlflow").start()
    try:
        def page(link: str) -> str:
            url = link.replace("http://127.0.0.1:5000", server.uri)
            dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                                  f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                                  "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
            return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))

        runs = page(runs_link)
        assert "Model training" in runs and "2 matching runs" in runs, runs[-3000:]  # the points, not their parent
        assert "train.learning_rate" in runs and "exact_match" in runs, runs[-3000:]  # the view's columns
        compare = page(compare_link)
        assert "Comparing 2 Runs" in compare, compare[-3000:]
    finally:
        server.kill()
