"""``launch.py predict`` and ``evaluate``: batch inference of a trained point on new data, locally
and as a sharded SLURM array, and metrics from a predictions file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers import cli_env, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mount):
    """The demo point, trained once for this module; returns its env and run directory."""
    tmp = tmp_path_factory.mktemp("predict")
    env = cli_env(tmp, mount)
    result = run_cli("run", "jobs/demo.yaml", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return env, next((tmp / "runs/demo").glob("demo-*")), tmp


def prompts_only(folder: Path, mount: Path) -> Path:
    demo = json.loads((mount / "data/demo.json").read_text())
    path = folder / "new.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in demo["eval"]))
    return path


def test_predict_then_evaluate_reproduces_training_exact_match(trained, mount):
    env, run_dir, tmp = trained
    new = prompts_only(tmp, mount)
    out = tmp / "preds.json"
    result = run_cli("predict", "demo", "--data", str(new), "--out", str(out), env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 100 and all(set(r) == {"prompt", "samples", "scores"} for r in rows)
    assert all(len(r["samples"]) == 1 and r["scores"][0] <= 0 for r in rows)  # log-probabilities

    scored = run_cli("evaluate", str(out), "--references", "demo.json", "--metrics", "exact_match", env=env)
    assert scored.returncode == 0, scored.stderr
    trained_em = json.loads((run_dir / "eval_results.json").read_text())["exact_match"]
    shown = next(line for line in scored.stdout.splitlines() if "exact_match" in line)
    assert float(shown.split("│")[2]) == pytest.approx(trained_em, abs=1e-4), (shown, trained_em)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow/mlflow.db'}")
    point_run = json.loads((run_dir / "state.json").read_text())["mlflow_run_id"]
    children = client.search_runs([client.get_run(point_run).info.experiment_id],
                                   f"tags.`mlflow.parentRunId` = '{point_run}'")
    assert len(children) == 1 and children[0].data.tags["kind"] == "predict"
    assert children[0].data.metrics["predict_records"] == 100 and children[0].info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(children[0].info.run_id)) == ["log.txt", "preds.json"]


def test_predict_with_beams_returns_scored_samples_best_first(trained, mount):
    env, _, tmp = trained
    out = tmp / "beams.json"
    result = run_cli("predict", "demo", "generate.num_beams=4", "generate.n_samples=3", "--data",
                     str(prompts_only(tmp, mount)), "--out", str(out), env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert all(len(r["samples"]) == 3 and r["scores"] == sorted(r["scores"], reverse=True) for r in rows)


def test_bad_predict_input_fails_before_anything_runs(trained, tmp_path):
    env, run_dir, tmp = trained
    no_prompts = tmp_path / "bad.json"
    no_prompts.write_text(json.dumps([{"text": "hello"}]))
    cases = [(["predict", "demo", "--data", str(no_prompts)], ["bad.json", "[0].prompt"]),
             (["predict", "--model", str(tmp_path / "nothing"), "--data", "demo.json"], ["No saved model", "nothing"]),
             (["predict", "demo", "train.max_steps=5", "--data", "demo.json"], ["train.max_steps"]),
             (["predict", "demo", "generate.top_p=0.5", "--data", "demo.json"], ["generate.top_p"])]
    before = sorted(p.name for p in (run_dir / "predict").iterdir()) if (run_dir / "predict").exists() else []
    for args, needles in cases:
        result = run_cli(*args, env=env)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert all(n in result.stderr for n in needles), (args, result.stderr)
    after = sorted(p.name for p in (run_dir / "predict").iterdir()) if (run_dir / "predict").exists() else []
    assert after == before


def test_predict_shards_over_a_slurm_array_and_merges_in_order(trained, mount):
    from slurm_helpers import ensure_default_config, require_slurm

    require_slurm()
    ensure_default_config()
    env, _, tmp = trained
    new = prompts_only(tmp, mount)
    local, sharded = tmp / "local.json", tmp / "sharded.json"
    assert run_cli("predict", "demo", "--data", str(new), "--out", str(local), env=env).returncode == 0
    result = run_cli("predict", "demo", "--data", str(new), "--out", str(sharded), "--backend", "slurm",
                     "--shards", "3", "resources.cpus_per_task=1", "resources.mem_gb=1", env=env)
    assert result.returncode == 0 and "submitted 3 shard(s)" in result.stdout, result.stdout + result.stderr
    deadline = time.time() + 300
    while not sharded.is_file() and time.time() < deadline:
        time.sleep(2)
    assert sharded.is_file(), result.stdout
    assert [r["samples"] for r in json.loads(sharded.read_text())] == [r["samples"] for r in json.loads(local.read_text())]
