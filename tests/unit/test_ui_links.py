"""The MLflow UI links, built without mlflow: the runs link opens the sweep's saved view (its
point runs, best first, with the metric and the varying params as columns), each point's link
its run page, and the address follows the port or the tracking server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT
from workflow.launch import mlflow_client
from workflow.launch.manifest import Manifest, PointRecord


def manifest(uri: str) -> Manifest:
    found = Manifest(sweep="lr", file="sweeps/lr.yaml", tracking_uri=uri, experiment="demo", experiment_id="7",
                     parent_run_id="p0")
    for i, run in enumerate(("r0", "r1")):
        found.points[f"h{i}"] = PointRecord(index=i, name=f"learning_rate={i}", hash=f"h{i}", run_dir=f"/x/{i}",
                                            mlflow_run_id=run)
    return found


def test_links_follow_the_port_and_open_the_saved_view_and_run_pages():
    found = manifest("sqlite:////x/mlflow.db")
    links = mlflow_client.ui_links(found, 5123)
    assert links.command == "python launch.py ui --port 5123"
    assert links.runs == (f"http://127.0.0.1:5123/#/experiments/7/runs?workflowType=machine_learning"
                          f"&viewStateShareKey=sweep-{found.sweep_id}")
    assert links.points["h1"] == "http://127.0.0.1:5123/#/experiments/7/runs/r1?workflowType=machine_learning"
    assert '["r0","r1"]' in links.compare


def test_links_are_built_without_importing_mlflow():
    code = ("import sys; from workflow.launch.mlflow_client import ui_links; from test_ui_links import manifest; "
            "ui_links(manifest('sqlite:////x/mlflow.db'), 5123); assert 'mlflow' not in sys.modules, 'imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (ROOT, ROOT / "tests", Path(__file__).parent)))})
    assert result.returncode == 0, result.stderr


def test_a_tracking_server_is_its_own_ui():
    links = mlflow_client.ui_links(manifest("http://tracker:8080/"), 5123)
    assert links.command is None and links.runs.startswith("http://tracker:8080/#/experiments/7/runs?")


def test_the_saved_view_shows_the_point_runs_by_the_metric_with_the_varying_params():
    key, value = mlflow_client.runs_view("lr", "abc", ["train.learning_rate"], "exact_match")
    assert key == "mlflow.sharedViewState.sweep-abc"
    state = json.loads(json.loads(value)["state"])
    assert state["searchFilter"] == "tags.sweep_id = 'abc' AND tags.point_hash != ''"
    assert state["orderByKey"] == "metrics.`exact_match`" and state["orderByAsc"] is False
    assert state["selectedColumns"] == ["metrics.`exact_match`", "metrics.`best_eval_loss`",
                                        "params.`train.learning_rate`"]
    loss = json.loads(json.loads(mlflow_client.runs_view("lr", "abc", [], None)[1])["state"])
    assert loss["orderByKey"] == "metrics.`best_eval_loss`" and loss["orderByAsc"] is True


def test_the_ui_command_serves_the_store_on_localhost(monkeypatch):
    monkeypatch.setattr(mlflow_client.shutil, "which", lambda name: f"/bin/{name}")
    command = mlflow_client.ui_command("sqlite:////x/mlflow.db", 5123)
    assert command == ["/bin/mlflow", "ui", "--backend-store-uri", "sqlite:////x/mlflow.db", "--host", "127.0.0.1",
                       "--port", "5123", "--workers", "1"]
