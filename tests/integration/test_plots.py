"""Eval plots reach the MLflow UI: a job logging to a real ``mlflow server`` on 127.0.0.1 attaches
its PNGs, and the endpoints the UI's artifact view calls list them and serve the images."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from helpers import run_cli
from mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


def test_classifier_plots_are_served_by_the_mlflow_ui(env, tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    try:
        result = run_cli("run", "jobs/classifier.yaml", "train.max_steps=60", f"tracking.uri={server.uri}", env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        record = next(iter(json.loads((tmp_path / "runs/classifier/manifest.json").read_text())["points"].values()))
        run_id = record["mlflow_run_id"]
        query = urllib.parse.urlencode({"run_id": run_id, "path": "plots"})
        listed = json.loads(urllib.request.urlopen(f"{server.uri}/ajax-api/2.0/mlflow/artifacts/list?{query}").read())
        assert [f["path"] for f in listed["files"]] == ["plots/classifier_curves.png"]
        query = urllib.parse.urlencode({"path": "plots/classifier_curves.png", "run_uuid": run_id})
        image = urllib.request.urlopen(f"{server.uri}/get-artifact?{query}").read()
        assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 10_000
    finally:
        server.kill()
