"""The command line: shipped YAMLs, no heavy imports, and clean failures on bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli

HEAVY = ("torch", "transformers", "deepspeed", "mlflow", "datasets", "peft")
SHIPPED = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("jobs/*.yaml"), *ROOT.glob("sweeps/*.yaml")])


@pytest.mark.parametrize("path", SHIPPED)
def test_every_shipped_yaml_validates_and_expands(path, env):
    assert Path(ROOT / path).read_text().startswith("# python launch.py"), "start with the command that runs it"
    result = run_cli("validate", path, env=env)
    assert result.returncode == 0, result.stderr
    dry = run_cli("sweep" if path.startswith("sweeps") else "run", path, "--dry_run", env=env)
    if "at most 4 GPUs per node" in dry.stderr:  # the live test cluster has only 4 GPUs per node
        assert "resources.gpus_per_node" in dry.stderr
        return
    assert dry.returncode == 0 and "dry run: nothing submitted" in dry.stdout, dry.stderr


@pytest.mark.parametrize("command", [["sweep", "sweeps/lr.yaml", "--dry_run"], ["validate", "jobs/demo.yaml"],
                                     ["list"], ["--help"]])
def test_cli_imports_no_heavy_modules(command, env):
    code = ("import sys, launch\n"
            f"launch.main({command!r})\n"
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "HEAVY=\n" in result.stdout or result.stdout.rstrip().endswith("HEAVY="), result.stdout[-500:]


def write(folder: Path, name: str, data) -> str:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def write_data(mount: Path, name: str, payload) -> str:
    path = mount / "data" / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return name


GOOD_RECORD = {"prompt": "translate: a", "completion": "b"}


def bad_cases(tmp: Path, mount: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (CLI args, substrings the error must contain)."""
    spec = {"model_init_name": "tiny-t5", "data_name": "demo.json"}
    return {
        "misspelled key": (["run", write(tmp, "a.yaml", {**spec, "train": {"learning_rte": 1}})],
                           ["a.yaml", "train.learning_rte", "did you mean 'learning_rate'"]),
        "wrong type": (["run", write(tmp, "b.yaml", {**spec, "train": {"max_steps": "many"}})],
                       ["b.yaml", "train.max_steps", "'many'"]),
        "zero count": (["run", write(tmp, "c.yaml", {**spec, "train": {"train_batch_size": 0}})],
                       ["c.yaml", "train.train_batch_size", "greater than 0"]),
        "negative count": (["run", write(tmp, "c2.yaml", {**spec, "resources": {"nodes": -2}})],
                           ["c2.yaml", "resources.nodes", "-2"]),
        "missing data file": (["run", write(tmp, "d.yaml", {**spec, "data_name": "nope.json"})],
                              ["nope.json", "data_name", "no such file"]),
        "malformed json": (["run", write(tmp, "e.yaml", {**spec, "data_name": write_data(mount, "bad.json", "{oops")})],
                           ["bad.json", "line 1", "valid JSON"]),
        "record without completion": (
            ["run", write(tmp, "f.yaml", {**spec, "data_name": write_data(
                mount, "nocomp.json", {"train": [GOOD_RECORD, {"prompt": "x"}], "eval": [GOOD_RECORD]})})],
            ["nocomp.json", "train[1].completion", "missing key"]),
        "empty train split": (
            ["run", write(tmp, "g.yaml", {**spec, "data_name": write_data(
                mount, "empty.json", {"train": [], "eval": [GOOD_RECORD]})})],
            ["empty.json", "train", "at least one record"]),
        "unknown backend": (["run", "jobs/demo.yaml", "--backend", "kubernetes"], ["backend", "'kubernetes'"]),
        "unknown backend in spec": (["run", write(tmp, "h.yaml", {**spec, "backend": "k8s"})], ["h.yaml", "backend"]),
        "missing spec file": (["run", str(tmp / "missing.yaml")], ["missing.yaml", "no such file"]),
        "missing sweep base": (["sweep", write(tmp, "s.yaml", {"base": "nope.yaml", "grid": {"train.seed": [1]}})],
                               ["s.yaml", "base", "nope.yaml"]),
        "unknown model": (["run", write(tmp, "i.yaml", {**spec, "model_init_name": "flan-t5-huge"})],
                          ["i.yaml", "model_init_name", "tiny-t5"]),
        "bad override": (["run", "jobs/demo.yaml", "train.lr=1"], ["train.lr", "did you mean"]),
    }


def test_bad_input_fails_cleanly_and_leaves_nothing(env, tmp_path, mount):
    for name, (args, needles) in bad_cases(tmp_path, mount).items():
        result = run_cli(*args, env=env)
        message = result.stderr
        assert result.returncode != 0, name
        assert "Traceback" not in message + result.stdout, name
        assert message.startswith("error:"), (name, message)
        for needle in needles:
            assert needle in message, (name, needle, message)
    assert not (tmp_path / "runs").exists(), "no run directory may be left behind"
    assert not (tmp_path / "mlflow").exists(), "no MLflow store or run may be created"


@pytest.mark.parametrize("flag", ["--dry_run", "-d"])
def test_an_override_after_a_boolean_flag_is_kept(flag, env):
    """fire took the word after a bare flag as its value: `--dry_run train.seed=7` lost the override."""
    def point_hash(*args):
        result = run_cli("run", "jobs/demo.yaml", *args, env=env)
        assert result.returncode == 0, result.stderr
        return re.search(r"│ 0 │ .*? │ ([0-9a-f]{8}) │", result.stdout).group(1)

    before = point_hash("train.seed=7", "--dry_run")
    assert point_hash(flag, "train.seed=7") == before != point_hash("--dry_run")


@pytest.mark.parametrize("given, threads", [(None, os.cpu_count() or 1), ("1", 1), ("4,2", "4,2"),
                                            ("0", os.cpu_count() or 1), ("\u00b2", os.cpu_count() or 1)])
def test_local_jobs_keep_the_callers_thread_count(given, threads, env):
    """The local backend splits the cores between its processes, unless OMP_NUM_THREADS is set."""
    env = {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"} | ({"OMP_NUM_THREADS": given} if given else {})
    result = run_cli("run", "jobs/demo.yaml", "--dry_run", env=env)
    assert result.returncode == 0, result.stderr
    assert re.findall(r"OMP_NUM_THREADS=(\S+)", result.stdout) == [str(threads)], result.stdout


def test_every_argument_has_complete_help():
    """fire reads `Args:` blocks; a continuation line that looks like `word: ...` starts a new
    argument and cuts the help short (it did for --fail_fast)."""
    import inspect

    from fire import docstrings

    import launch

    for name, method in inspect.getmembers(launch.Commands, inspect.isfunction):
        if name.startswith("_"):
            continue
        doc = inspect.getdoc(method) or ""
        parsed = {a.name: a.description or "" for a in docstrings.parse(doc).args or []}
        block = doc.split("Args:\n", 1)[1].split("\n\n")[0] if "Args:\n" in doc else ""
        written: dict[str, str] = {}
        for line in block.splitlines():
            head = re.match(r" {4}(\w+): (.*)", line)
            if head:
                written[head.group(1)] = head.group(2)
            elif written:
                written[list(written)[-1]] += " " + line.strip()
        for param in list(inspect.signature(method).parameters)[1:]:
            assert written.get(param), f"launch.py {name}: --{param} has no help"
            assert parsed.get(param, "").split() == written[param].split(), f"launch.py {name}: --{param} help is cut"
