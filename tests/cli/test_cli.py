"""The command line: shipped YAMLs, no heavy imports, the collector, flags and overrides, thread
counts and help. Bad input: test_bad_inputs.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, run_cli

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
