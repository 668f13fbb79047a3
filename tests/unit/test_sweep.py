"""Sweep expansion: grid, zip, random, points; stable hashes and readable names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from workflow.errors import SpecError
from workflow.launch.sweep import expand, single
from workflow.launch.sweep_blocks import BLOCK_FIELDS, BaseBlocks, shared_dump
from workflow.spec import JobSpec
from workflow.tree import format_value

ROOT = Path(__file__).resolve().parents[2]
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
    pairs = {(p.spec.train.learning_rate, p.spec.train.seed) for p in sweep.points}
    assert pairs == {(lr, s) for lr in (1e-3, 1e-2) for s in (1, 2, 3)}
    assert sweep.varying == ["train.learning_rate", "train.seed"]


def test_zip_pairs_values_and_combines_with_grid(base):
    sweep = expand(sweep_file(base, {"zip": {"train.learning_rate": [1e-3, 1e-2], "train.warmup_steps": [0, 10]},
                                     "grid": {"train.seed": [1, 2]}}))
    combos = {(p.spec.train.learning_rate, p.spec.train.warmup_steps, p.spec.train.seed)
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
        assert 1e-5 <= point.spec.train.learning_rate <= 1e-2
        assert 0 <= point.spec.train.warmup_steps <= 100


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
    assert {p.spec.train.max_steps for p in sweep.points} == {5}


def test_hash_is_stable_and_ignores_execution_only_keys():
    spec = {"model_init_name": "m", "data_name": "d.json", "train": {"learning_rate": 0.001}, "backend": "local",
            "tracking": {"experiment": "a"}, "resources": {"nodes": 1, "timeout_min": 5}}
    moved = {"resources": {"timeout_min": 50, "nodes": 1}, "tracking": {"experiment": "b"}, "backend": "slurm",
             "train": {"learning_rate": 0.001}, "data_name": "d.json", "model_init_name": "m", "run_name": "x"}
    first = JobSpec.model_validate(spec).point_hash()
    assert first == JobSpec.model_validate(moved).point_hash()
    assert JobSpec.model_validate({**spec, "train": {"learning_rate": 0.002}}).point_hash() != first


def test_hashes_of_shipped_specs_are_those_of_earlier_releases():
    """Finished points are found again by hash: these values were computed before the spec became
    typed end to end (and before lora.quantize existed for the LoRA job)."""
    assert [p.hash for p in expand(ROOT / "sweeps/lr.yaml").points] == ["2c7ce4d1e941", "c85620e9b4f8",
                                                                         "b65382ace2ae"]
    assert single(ROOT / "jobs/flan-t5-xl-lora.yaml").points[0].hash == "dbe657a2ee58"
    assert single(ROOT / "jobs/flan-t5-xxl-zero3-2x8.yaml").points[0].hash == "b94e1c4f1f03"


def test_format_value():
    assert [format_value(v) for v in (3e-4, 0.01, 1e-3, 2, "x", 123456.0)] == ["3e-4", "0.01", "1e-3", "2", "x", "1.235e5"]


def test_keys_added_later_keep_old_hashes():
    """lora.quantize arrived after LoRA points were hashed: at "none" it leaves the hash alone."""
    base = {"model_init_name": "m", "data_name": "d.json"}
    old = JobSpec.model_validate({**base, "lora": {"r": 8}}).point_hash()
    assert JobSpec.model_validate({**base, "lora": {"r": 8, "quantize": "none"}}).point_hash() == old
    assert JobSpec.model_validate({**base, "lora": {"r": 8, "quantize": "4bit"},
                                   "resources": {"gpus_per_node": 1}}).point_hash() != old
    assert JobSpec.model_validate(base).point_hash() != old


BASE_RAW = {"model_init_name": "tiny-t5", "data_name": "demo.json",
            "train": {"global_batch_size": 64, "train_batch_size": 8, "learning_rate": 1e-3},
            "resources": {"tasks_per_node": 1, "gpus_per_node": 0}, "deepspeed": {"enabled": True, "stage": 2}}


CASES = [
    ({"resources": {"tasks_per_node": 2}}, {}),                    # accumulation recomputed, not inherited
    ({"train": {"learning_rate": 5e-3}}, {"train": {"learning_rate": 7e-3}}),  # the command line wins
    ({"train": {"train_batch_size": 16}, "generate": {"num_beams": 4}}, {"resources": {"nodes": 2}}),
    ({"deepspeed": {"bf16": True}}, {}),                            # sets train.precision through a check
    ({"lora": {"r": 8}}, {"train": {"seed": 3}}),                   # a block the base does not have
    ({"train": {"train_batch_size": -1}}, {}),                      # errors: the same ones
    ({"train": {"global_batch_size": 60}}, {}),
    ({"deepspeed": {"fp16": True, "bf16": True}}, {}),
    ({"task": "classifier", "classifier": {"top_k": 2}}, {}),
    ({}, {}),                                                       # after a point that changed the world size
]


def test_points_validate_exactly_as_their_merged_dicts():
    """Each point validates only the blocks it overrides (the rest are the base's, copied): the
    spec, and each error, must be what validating the whole merged dict gives."""
    from pydantic import ValidationError

    from workflow.tree import deep_merge

    def outcome(make, point_hash):
        try:
            spec = make()
        except ValidationError as exc:
            return [(e["loc"], e["msg"]) for e in exc.errors()]
        return spec.model_dump(mode="json"), point_hash(spec)

    bases, specs = {}, []
    for nested, cli in CASES:  # in sequence, on one base per command line: points must not leak into it
        base = bases.setdefault(repr(cli), BaseBlocks(deep_merge(BASE_RAW, cli)))
        whole = outcome(lambda: JobSpec.model_validate(deep_merge(deep_merge(BASE_RAW, nested), cli)),
                        JobSpec.point_hash)
        shared_hash = lambda spec: spec.point_hash(base.hash_texts)  # noqa: E731
        assert outcome(lambda: base.validate(nested, cli), shared_hash) == whole, (nested, cli)
        if isinstance(whole, tuple):
            specs.append((base.validate(nested, cli), whole))
    for spec, whole in specs:  # the blocks points share are unchanged by the points after them
        assert (spec.model_dump(mode="json"), spec.point_hash()) == whole
    dumped = {}
    for spec, whole in specs + specs:  # job data: each shared block dumped once, every spec's dump as its own
        assert json.dumps(shared_dump(spec, dumped)) == json.dumps(whole[0])
    blocks = [getattr(s, n) for s, _ in specs for n in BLOCK_FIELDS if n != "train" and getattr(s, n) is not None]
    assert len(dumped) == len({id(b) for b in blocks}) < len(blocks)  # once per block object, shared ones once


def test_max_points_is_checked_before_the_points_are_built(base):
    path = base / "huge.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"train.seed": list(range(100000)),
                                                                 "train.learning_rate": [1e-3] * 100000}}))
    with pytest.raises(SpecError) as caught:
        expand(path)
    assert "got 10000000000 points" in caught.value.problems[0].render()


def test_points_are_named_by_the_keys_they_set(isolated):
    names = [p.name for p in expand(ROOT / "sweeps/decoding.yaml").points]
    assert names == ["default", "n_samples=2,num_beams=4", "length_penalty=2,num_beams=4",
                     "n_samples=4,temperature=0.7,top_p=0.9", "penalty_alpha=0.6,top_k=4"]
