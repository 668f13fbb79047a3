"""Sweep expansion: grid, zip, random, points; stable hashes and readable names."""

from __future__ import annotations

import pytest
import yaml

from workflow.errors import SpecError
from workflow.launch.sweep import expand, format_value, spec_hash

BASE = {"model_init_name": "tiny-t5", "data_name": "demo.json"}


@pytest.fixture
def base(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    return tmp_path


def sweep_file(folder, body: dict, name: str = "s.yaml") -> str:
    path = folder / name
    path.write_text(yaml.safe_dump({"base": "base.yaml", **body}))
    return str(path)


def test_grid_is_a_cartesian_product(base):
    sweep = expand(sweep_file(base, {"grid": {"train.learning_rate": [1e-3, 1e-2], "train.seed": [1, 2, 3]}}))
    assert len(sweep.points) == 6
    pairs = {(p.spec["train"]["learning_rate"], p.spec["train"]["seed"]) for p in sweep.points}
    assert pairs == {(lr, s) for lr in (1e-3, 1e-2) for s in (1, 2, 3)}
    assert sweep.varying == ["train.learning_rate", "train.seed"]


def test_zip_pairs_values_and_combines_with_grid(base):
    sweep = expand(sweep_file(base, {"zip": {"train.learning_rate": [1e-3, 1e-2], "train.warmup_steps": [0, 10]},
                                     "grid": {"train.seed": [1, 2]}}))
    combos = {(p.spec["train"]["learning_rate"], p.spec["train"]["warmup_steps"], p.spec["train"]["seed"])
              for p in sweep.points}
    assert combos == {(1e-3, 0, 1), (1e-3, 0, 2), (1e-2, 10, 1), (1e-2, 10, 2)}


def test_zip_of_unequal_length_is_an_error(base):
    with pytest.raises(SpecError) as info:
        expand(sweep_file(base, {"zip": {"train.learning_rate": [1e-3, 1e-2], "train.seed": [1]}}))
    assert "equal length" in str(info.value) and "s.yaml:zip" in str(info.value)


def test_random_is_deterministic_per_seed(base):
    body = {"random": {"n": 5, "seed": 7, "params": {"train.learning_rate": {"loguniform": [1e-5, 1e-2]},
                                                    "train.warmup_steps": {"int": [0, 100]},
                                                    "train.weight_decay": {"uniform": [0.0, 0.1]},
                                                    "train.seed": {"choice": [1, 2, 3]}}}}
    first = [p.hash for p in expand(sweep_file(base, body)).points]
    again = [p.hash for p in expand(sweep_file(base, body)).points]
    body["random"]["seed"] = 8
    other = [p.hash for p in expand(sweep_file(base, body, "t.yaml")).points]
    assert first == again and first != other and len(set(first)) == 5
    for point in expand(sweep_file(base, body)).points:
        assert 1e-5 <= point.spec["train"]["learning_rate"] <= 1e-2
        assert 0 <= point.spec["train"]["warmup_steps"] <= 100


def test_points_and_readable_names(base):
    sweep = expand(sweep_file(base, {"points": [{"train.learning_rate": 3e-4}, {"train.learning_rate": 0.01}]}))
    assert [p.name for p in sweep.points] == ["learning_rate=3e-4", "learning_rate=0.01"]


def test_duplicate_points_are_an_error(base):
    with pytest.raises(SpecError, match="duplicates point 0"):
        expand(sweep_file(base, {"points": [{"train.seed": 1}, {"train.seed": 1}]}))


def test_empty_grid_axis_and_unknown_key(base):
    with pytest.raises(SpecError) as info:
        expand(sweep_file(base, {"grid": {"train.seed": [], "train.lr": [1]}}))
    text = str(info.value)
    assert "grid.train.seed" in text and "non-empty" in text and "grid.train.lr" in text


def test_invalid_value_names_the_sweep_axis(base):
    with pytest.raises(SpecError) as info:
        expand(sweep_file(base, {"grid": {"train.max_steps": [10, -1]}}))
    assert "grid.train.max_steps" in str(info.value) and "greater than 0" in str(info.value)


def test_unknown_sweep_key_suggests(base):
    with pytest.raises(SpecError, match="did you mean 'grid'"):
        expand(sweep_file(base, {"gird": {"train.seed": [1]}}))


def test_missing_base(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "nope.yaml", "grid": {"train.seed": [1]}}))
    with pytest.raises(SpecError, match="base"):
        expand(path)


def test_max_points_is_enforced(base):
    with pytest.raises(SpecError, match="at most 3 points"):
        expand(sweep_file(base, {"max_points": 3, "grid": {"train.seed": [1, 2, 3, 4]}}))


def test_cli_overrides_apply_to_every_point(base):
    sweep = expand(sweep_file(base, {"grid": {"train.seed": [1, 2]}}), ["train.max_steps=5"])
    assert {p.spec["train"]["max_steps"] for p in sweep.points} == {5}


def test_hash_is_stable_and_ignores_execution_only_keys():
    spec = {"task": "seq2seq", "train": {"learning_rate": 0.001}, "backend": "local",
            "tracking": {"experiment": "a"}, "resources": {"nodes": 1, "timeout_min": 5}}
    moved = {"resources": {"timeout_min": 50, "nodes": 1}, "tracking": {"experiment": "b"}, "backend": "slurm",
             "train": {"learning_rate": 0.001}, "task": "seq2seq"}
    assert spec_hash(spec) == spec_hash(moved) == "98982fca0945"
    assert spec_hash({**spec, "train": {"learning_rate": 0.002}}) != spec_hash(spec)


def test_format_value():
    assert [format_value(v) for v in (3e-4, 0.01, 1e-3, 2, "x", 123456.0)] == ["3e-4", "0.01", "1e-3", "2", "x", "1.235e5"]


def test_keys_added_later_keep_old_hashes():
    """lora.quantize arrived after LoRA points were hashed: at "none" it leaves the hash alone."""
    from workflow.launch.sweep import spec_hash

    old = {"task": "seq2seq", "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q", "v"]}}
    new = {**old, "lora": {**old["lora"], "quantize": "none"}}
    assert spec_hash(new) == spec_hash(old)
    assert spec_hash({**old, "lora": {**old["lora"], "quantize": "4bit"}}) != spec_hash(old)
    assert spec_hash({"task": "seq2seq", "lora": None}) == spec_hash({"task": "seq2seq", "lora": None})
