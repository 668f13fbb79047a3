"""Decoding on the real tiny T5 (torch, in this process and in runs): contrastive search (ours:
transformers 5 loads it from the hub), outputs constrained to a label set, beam search returning
the best beams, and the taxonomy job never leaving the taxonomy."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli
from workflow.spec import GenerateSpec


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


@pytest.fixture(scope="module")
def tiny(mount):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    path = str(mount / "models/tiny-t5")
    return AutoModelForSeq2SeqLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


PROMPTS = ["translate: red big dog", "translate: blue small cat on a mat"]


def test_contrastive_search_without_penalty_is_greedy(tiny):
    from workflow.node.decoding import generate

    model, tokenizer = tiny
    greedy = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12), 64)
    nearly = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12, penalty_alpha=1e-9, top_k=4), 64)
    assert nearly == greedy


def test_contrastive_search_penalises_repetition(tiny):
    """The untrained tiny T5 repeats one word under greedy decoding; the penalty breaks that."""
    from workflow.node.decoding import generate

    model, tokenizer = tiny
    greedy = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12), 64)
    contrastive = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12, penalty_alpha=0.8, top_k=8), 64)

    def distinct(outputs):
        words = [w for out in outputs for w in out[0].split()]
        return len(set(words)) / max(len(words), 1)

    assert distinct(contrastive) > distinct(greedy), (greedy, contrastive)


def test_allowed_outputs_keep_every_output_inside_the_taxonomy(tiny):
    """The untrained tiny T5 emits words outside the taxonomy; constrained, it cannot."""
    from workflow.demo import taxonomy
    from workflow.node.decoding import generate

    model, tokenizer = tiny
    labels = taxonomy()
    free = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=16), 64)
    assert not any(out[0] in labels for out in free), free
    constrained = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=24, allowed_outputs=labels,
                                                                  num_beams=8, n_samples=4), 64)
    assert all(len(set(outs)) == 4 and set(outs) <= set(labels) for outs in constrained), constrained
