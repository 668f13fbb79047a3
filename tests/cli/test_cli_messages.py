"""What the command line says: every problem of an input at once, distinct point names, the right
command for a file, and a hub model that cannot be fetched."""

from __future__ import annotations

import json

import pytest

from helpers import hub_cache, run_cli


def test_every_problem_of_an_input_is_reported_at_once(env, tmp_path):
    result = run_cli("run", "jobs/demo.yaml", "model_init_name=nope", "data_name=demo2.json", "resources.nodes=2",
                     env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    for needle in ("model_init_name: expected a model folder", "data_name: expected a JSON file",
                   "did you mean 'demo.json'?", "resources.nodes: expected 1 with the local backend"):
        assert needle in result.stderr, (needle, result.stderr)
    assert result.stderr.count("error:") == 1 and not (tmp_path / "runs").exists()


def test_runs_of_one_file_with_different_overrides_have_distinct_names(env):
    from workflow.launch.sweep import single

    assert single("jobs/demo.yaml").points[0].name == "demo"
    assert single("jobs/demo.yaml", ["deepspeed.stage=3"]).points[0].name == "demo[deepspeed.stage=3]"
    dry = run_cli("run", "jobs/demo.yaml", "train.seed=3", "--dry_run", env=env)
    assert "demo[train.seed=3]" in dry.stdout, "the brackets are text, not console markup"


@pytest.mark.parametrize("argv, needle", [
    (["swep", "sweeps/lr.yaml"], "did you mean 'sweep'?"),
    (["sweep", "jobs/demo.yaml"], "use: python launch.py run jobs/demo.yaml"),
    (["run", "sweeps/lr.yaml"], "use: python launch.py sweep sweeps/lr.yaml"),
])
def test_the_command_line_names_the_right_command(argv, needle, env):
    result = run_cli(*argv, env=env)
    assert result.returncode != 0 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n  - ") == 1, "one problem, not one per unknown key"


def test_a_hub_model_nobody_can_fetch_is_flagged(env, tmp_path):
    home = {**env, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    home.pop("HF_HUB_CACHE")
    refused = run_cli("validate", "jobs/flan-t5-xxl-zero3.yaml", env=home)
    assert refused.returncode != 0 and "model_init_path" in refused.stderr and "not cached" in refused.stderr
    assert "hf download google/flan-t5-xxl" in refused.stderr, refused.stderr
    hub_cache(tmp_path / "hf/hub", ["google/flan-t5-xxl"])
    cached = run_cli("validate", "jobs/flan-t5-xxl-zero3.yaml", env=home)
    assert cached.returncode == 0 and "warning" not in cached.stderr, cached.stderr


def test_validate_warns_of_text_the_tokenizer_maps_to_unk(env, tmp_path):
    data = tmp_path / "mixed.json"
    record = {"prompt": "translate: red big dog 中文", "completion": "rouge grand chien"}
    data.write_text(json.dumps({"train": [record], "eval": [record]}))
    result = run_cli("validate", "jobs/demo.yaml", f"data_name={data}", env=env)
    assert result.returncode == 0, result.stderr
    assert "12.5% of sampled words" in result.stderr and "(1 of 8;" in result.stderr and "mixed.json:train" in result.stderr, result.stderr
    assert "'中文'" in result.stderr, result.stderr
