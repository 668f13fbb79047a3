"""``launch.py evaluate`` logging into a named run of a real MLflow store (a fresh sqlite store
takes MLflow tens of seconds to create)."""

from __future__ import annotations

import json

from helpers import run_cli


def test_evaluate_logs_into_a_named_run(env, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e"))
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"prompt": "a", "samples": ["x"], "reference": "x"}]))
    result = run_cli("evaluate", str(preds), "--metrics", "exact_match", "--run", run.info.run_id,
                     "--tracking_uri", uri, env=env)
    assert result.returncode == 0, result.stderr
    assert client.get_run(run.info.run_id).data.metrics == {"exact_match": 1.0}
    bad = run_cli("evaluate", str(preds), "--run", "no-such-run", "--tracking_uri", uri, env=env)
    assert bad.returncode != 0 and "could not log to MLflow run no-such-run" in bad.stderr
