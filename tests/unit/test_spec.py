"""Job spec loading and validation: every error reported at once, with file, key and hint."""

from __future__ import annotations

import pytest
import yaml

from workflow.launch.config import load_spec, parse_overrides
from workflow.errors import SpecError
from workflow.spec import JobSpec, field_paths

GOOD = {"model_init_name": "tiny-t5", "data_name": "demo.json"}


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def problems(exc: SpecError) -> dict[str, str]:
    return {p.key: p.render() for p in exc.problems}


def test_defaults_fill_a_minimal_spec(tmp_path):
    spec = load_spec(write(tmp_path / "a.yaml", GOOD))
    assert spec.train.max_steps == 1000 and spec.backend == "local" and spec.deepspeed.enabled is False


def test_misspelled_key_is_named_with_a_suggestion(tmp_path):
    path = write(tmp_path / "a.yaml", {**GOOD, "train": {"learning_rte": 1e-4}})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    found = problems(info.value)
    assert "train.learning_rte" in found
    assert "did you mean 'learning_rate'" in found["train.learning_rte"]
    assert path in found["train.learning_rte"]


def test_all_errors_are_reported_at_once(tmp_path):
    path = write(tmp_path / "a.yaml", {**GOOD, "train": {"max_steps": 0, "train_batch_size": "big"},
                                       "resources": {"nodes": -1}, "bogus": 1})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert set(problems(info.value)) == {"train.max_steps", "train.train_batch_size", "resources.nodes", "bogus"}
    text = str(info.value)
    assert "greater than 0" in text and "'big'" in text


def test_yaml_floats_without_dot_are_accepted(tmp_path):
    spec = load_spec(write(tmp_path / "a.yaml", "model_init_name: m\ndata_name: d.json\ntrain:\n  learning_rate: 3e-4\n"))
    assert spec.train.learning_rate == pytest.approx(3e-4)


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", {**GOOD, "train": {"max_steps": 10, "seed": 1}})
    path = write(tmp_path / "child.yaml", {"base": "base.yaml", "train": {"seed": 2}})
    spec = load_spec(path, ["train.learning_rate=1e-3", "generate.max_new_tokens=7"])
    assert (spec.train.max_steps, spec.train.seed) == (10, 2)
    assert spec.train.learning_rate == pytest.approx(1e-3) and spec.generate.max_new_tokens == 7


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(SpecError, match="inherits from itself"):
        load_spec(tmp_path / "a.yaml")


def test_unknown_override_suggests_the_full_path():
    with pytest.raises(SpecError) as info:
        parse_overrides(["learning_rate=1e-3"])
    assert "did you mean 'train.learning_rate'" in str(info.value)


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "train:\n  max_steps: [1, 2\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "line" in str(info.value) and path in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_model_source_rules(tmp_path):
    with pytest.raises(SpecError, match="model_init_name"):
        load_spec(write(tmp_path / "a.yaml", {"data_name": "d.json"}))
    with pytest.raises(SpecError, match="only one"):
        load_spec(write(tmp_path / "b.yaml", {**GOOD, "model_init_path": "google/flan-t5-xxl"}))


def test_invalid_deepspeed_block(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path / "a.yaml", {**GOOD, "deepspeed": {"stage": 1}}))
    assert "0, 2 or 3" in str(info.value)
    with pytest.raises(SpecError, match="offload_param needs stage 3"):
        load_spec(write(tmp_path / "b.yaml", {**GOOD, "deepspeed": {"stage": 2, "offload_param": "cpu"}}))


def test_every_field_is_documented():
    missing = [p for p, info in field_paths().items() if not info.description]
    assert not missing, missing


def test_unknown_backend_names_the_key(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path / "a.yaml", {**GOOD, "backend": "kubernetes"}))
    assert "backend" in problems(info.value)
    assert JobSpec.model_fields["backend"].default == "local"


# The retry: block: off by default, never hashed, and bad input named with a suggestion.

def test_retry_is_off_by_default_and_never_changes_the_point_hash(tmp_path):
    plain = load_spec(write(tmp_path / "a.yaml", GOOD))
    retried = load_spec(write(tmp_path / "b.yaml", {**GOOD, "retry": {"max": 3, "on": ["node_fail", "timeout"]}}))
    assert plain.retry is None
    assert retried.retry.max == 3 and retried.retry.on == ["node_fail", "timeout"]
    assert plain.point_hash() == retried.point_hash()


def test_an_unquoted_yaml_on_key_is_read_as_on(tmp_path):
    spec = load_spec(write(tmp_path / "a.yaml", "model_init_name: tiny-t5\ndata_name: demo.json\n"
                                                "retry:\n  on: [preempted]\n"))
    assert spec.retry.on == ["preempted"] and spec.retry.max == 2


def test_unknown_cause_negative_max_and_empty_on_are_named(tmp_path):
    path = write(tmp_path / "a.yaml", {**GOOD, "retry": {"max": -1, "on": ["nodefail"]}})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    found = problems(info.value)
    assert set(found) == {"retry.max", "retry.on"}, found
    assert "did you mean 'node_fail'" in found["retry.on"] and path in found["retry.on"]
    assert "greater than or equal to 0" in found["retry.max"]
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path / "b.yaml", {**GOOD, "retry": {"on": []}}))
    assert "retry.on" in problems(info.value)


def test_oom_gpu_on_cpu_only_resources_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("WF_INJECT_FAULT", raising=False)
    path = write(tmp_path / "a.yaml", {**GOOD, "retry": {"on": ["oom_gpu"]}})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "oom_gpu needs GPUs" in problems(info.value)["retry.on"]
    assert load_spec(write(tmp_path / "b.yaml", {**GOOD, "resources": {"gpus_per_node": 1},
                                                 "retry": {"on": ["oom_gpu"]}})).retry.on == ["oom_gpu"]
    monkeypatch.setenv("WF_INJECT_FAULT", "oom_gpu@3")  # the test seam stands in for a GPU
    assert load_spec(path).retry.on == ["oom_gpu"]
