"""The ``retry:`` block: off by default, never hashed, and bad input named with a suggestion."""

from __future__ import annotations

import pytest
import yaml

from workflow.errors import SpecError
from workflow.launch.config import load_spec

GOOD = {"model_init_name": "tiny-t5", "data_name": "demo.json"}


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def problems(exc: SpecError) -> dict[str, str]:
    return {p.key: p.render() for p in exc.problems}


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
