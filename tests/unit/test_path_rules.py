"""Where a spec's paths point: a model value is a local path or a hub id by one rule; jobs get
every path absolute, as the launcher found it (the point hash stays the value as written); an
offline machine refuses a hub id its hub cache lacks, naming the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, hub_cache
from workflow.errors import SpecError
from workflow.launch import config
from workflow.launch.plan import check_model, hub_warning, make_plan
from workflow.launch.sweep import single
from workflow.paths import is_local_path, resolve_tracking_uri
from workflow.spec import JobSpec


@pytest.fixture
def here(isolated, monkeypatch, mount):
    """A working directory holding a local model folder named like a hub id."""
    cwd = isolated / "cwd"
    shutil.copytree(mount / "models/tiny-t5", cwd / "google/flan-t5-xl")
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.parametrize("value", ["/abs/model", "./model", "../model", "~/model", "~"])
def test_a_value_with_a_path_prefix_is_local_even_when_missing(value, here):
    assert is_local_path(value)


def test_an_existing_folder_is_local_and_anything_else_a_hub_id(here):
    assert is_local_path("google/flan-t5-xl")  # a folder here
    assert not is_local_path("google/flan-t5-xxl")  # no such folder: a hub id
    assert not is_local_path(".model")  # a dot starts no path prefix


def spec_data(**keys) -> dict:
    return JobSpec(data_name="demo.json", **{"model_init_path": "google/flan-t5-xl", **keys}).model_dump(mode="json")


def test_the_job_gets_a_local_model_folder_absolute_and_a_hub_id_as_written(here):
    assert config.absolute_paths(spec_data())["model_init_path"] == str(here / "google/flan-t5-xl")
    assert config.absolute_paths(spec_data(model_init_path="google/flan-t5-xxl"))["model_init_path"] == \
        "google/flan-t5-xxl"
    assert config.absolute_paths(spec_data(model_init_path="~/m"))["model_init_path"] == str(Path.home() / "m")


def test_the_job_gets_output_dir_against_the_working_directory(here):
    assert config.absolute_paths(spec_data(output_dir="out/final"))["output_dir"] == str(here / "out/final")
    assert config.absolute_paths(spec_data(output_dir="/abs/final"))["output_dir"] == "/abs/final"


def test_the_job_gets_allowed_outputs_where_the_launcher_found_them(here, mount):
    (here / "labels.txt").write_text("a\nb\n")
    found = spec_data(generate={"allowed_outputs": "labels.txt"})
    shared = found["generate"]
    assert config.absolute_paths(found)["generate"]["allowed_outputs"] == str(here / "labels.txt")
    assert shared["allowed_outputs"] == "labels.txt", "a block that points share is copied, never edited"
    under_mount = spec_data(generate={"allowed_outputs": "taxonomy.json"})
    assert config.absolute_paths(under_mount)["generate"]["allowed_outputs"] == str(mount / "data/taxonomy.json")


def test_the_point_hash_is_the_value_as_written_wherever_the_command_runs(here, monkeypatch, tmp_path):
    spec = tmp_path / "rel.yaml"
    spec.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "output_dir": "out/final"}))
    first = single(spec).points[0]
    monkeypatch.chdir(tmp_path)
    assert single(spec).points[0].hash == first.hash
    assert first.spec.output_dir == "out/final"


def test_a_relative_sqlite_store_is_made_absolute(here):
    assert resolve_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{here / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.fixture
def offline(here, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    return tmp_path / "empty-hub"


def test_offline_an_uncached_hub_id_is_refused_naming_the_key(offline):
    problem = check_model(JobSpec(model_init_path="google/flan-t5-xxl", data_name="demo.json"), "x.yaml")
    assert (problem.file, problem.key) == ("x.yaml", "model_init_path")
    assert "not cached" in problem.given and "HF_HUB_OFFLINE=1" in problem.expected
    assert "hf download google/flan-t5-xxl" in problem.hint and "huggingface-cli" not in problem.hint


def test_offline_a_cached_hub_id_and_a_local_folder_pass(offline):
    hub_cache(offline, ["google/flan-t5-xxl"])
    assert check_model(JobSpec(model_init_path="google/flan-t5-xxl", data_name="demo.json"), "x.yaml") is None
    assert check_model(JobSpec(model_init_path="google/flan-t5-xl", data_name="demo.json"), "x.yaml") is None


def test_a_cache_entry_without_its_main_revision_is_not_cached(offline):
    (offline / "models--google--flan-t5-xxl/snapshots/abc").mkdir(parents=True)
    (offline / "models--google--flan-t5-xxl/snapshots/abc/config.json").write_text("{}")
    assert check_model(JobSpec(model_init_path="google/flan-t5-xxl", data_name="demo.json"), "x.yaml") is not None


def test_validation_refuses_the_uncached_hub_id(offline, tmp_path):
    spec = tmp_path / "hub.yaml"
    spec.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "model_init_name": None,
                                    "model_init_path": "google/flan-t5-xxl"}))
    with pytest.raises(SpecError) as caught:
        make_plan(single(spec))
    assert [(p.file, p.key) for p in caught.value.problems] == [(str(spec), "model_init_path")]


def test_online_an_unreachable_hub_is_a_warning(here, monkeypatch, tmp_path):
    from workflow.launch import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(hub, "reachable", lambda hub_id: False)
    spec = JobSpec(model_init_path="google/flan-t5-xxl", data_name="demo.json")
    assert check_model(spec, "x.yaml") is None
    assert "google/flan-t5-xxl is not in the model cache" in hub_warning(spec)
    assert hub_warning(JobSpec(model_init_path="google/flan-t5-xl", data_name="demo.json")) is None  # local
