"""Runs that decode: beam search returns the best beams, and the taxonomy job never leaves the
taxonomy."""

from __future__ import annotations

import json

from helpers import run_cli


def test_beam_search_returns_the_best_beams(env, tmp_path):
    result = run_cli("run", "jobs/demo.yaml", "train.do_train=false", "generate.num_beams=4",
                     "generate.n_samples=2", "generate.length_penalty=1.2", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    predictions = json.loads(next((tmp_path / "runs/demo").glob("demo*/predictions.json")).read_text())
    assert len(predictions) == 100 and all(len(p["samples"]) == 2 for p in predictions)
    assert any(p["samples"][0] != p["samples"][1] for p in predictions)
    results = json.loads(next((tmp_path / "runs/demo").glob("demo*/eval_results.json")).read_text())
    assert "exact_match_any_of_2" in results


def test_taxonomy_job_ranks_categories_and_never_leaves_the_taxonomy(env, tmp_path, mount):
    result = run_cli("run", "jobs/taxonomy.yaml", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = next((tmp_path / "runs/taxonomy").glob("taxonomy-*"))
    taxonomy = set(json.loads((mount / "data/taxonomy.json").read_text())["labels"])
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert len(predictions) == 112 and all(len(p["samples"]) == 4 and set(p["samples"]) <= taxonomy
                                           for p in predictions)
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert results["f1_at_4"] >= 0.9 and results["exact_set_accuracy"] >= 0.8, results
