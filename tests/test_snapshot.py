"""The code a job runs is the code that was submitted: a snapshot of the tracked package, taken at
submission, refusing uncommitted changes unless --allow_dirty (the diff is then kept)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from workflow.errors import SpecError
from workflow.launch import snapshot


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A clone of this project's committed tree, as the snapshot's source."""
    path = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    monkeypatch.setattr(snapshot, "PROJECT_ROOT", path)
    return path


def test_snapshot_copies_the_package_and_keeps_it(repo, tmp_path):
    taken = snapshot.take(tmp_path / "sweep")
    assert not taken.dirty and len(taken.commit) == 40 and "workflow/node/entrypoint.py" in taken.files
    taken.write()
    copied = taken.root / "workflow/node/entrypoint.py"
    assert copied.read_text() == (repo / "workflow/node/entrypoint.py").read_text()
    assert (taken.root / "setup.cfg").is_file() and not (taken.root / "tests").exists()
    (repo / "workflow/node/entrypoint.py").write_text("raise SystemExit('edited')\n")
    assert "raise SystemExit('edited')" not in copied.read_text()  # the snapshot does not follow the checkout
    assert snapshot.take(tmp_path / "sweep", allow_dirty=True).root != taken.root  # new code, new digest


def test_a_dirty_tree_is_refused_and_allowed_with_its_diff(repo, tmp_path):
    with (repo / "workflow/tree.py").open("a") as handle:
        handle.write("# a local experiment\n")
    with pytest.raises(SpecError) as caught:
        snapshot.take(tmp_path / "sweep").check()
    text = str(caught.value)
    assert "workflow/tree.py" in text and "--allow_dirty" in text
    taken = snapshot.take(tmp_path / "sweep", allow_dirty=True)
    taken.check()
    taken.write()
    assert taken.dirty and "+# a local experiment" in (taken.root / "code.diff").read_text()


@pytest.mark.integration
def test_a_job_edited_after_submission_runs_the_submitted_code(tmp_path, env):
    """A held SLURM job; the checkout's entrypoint is broken before the job is released."""
    from slurm_helpers import ensure_default_config, require_slurm, wait_states

    require_slurm()
    ensure_default_config()
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    spec = {"base": str(ROOT / "jobs/demo.yaml"), "backend": "slurm", "slurm": {"sbatch": {"hold": True}},
            "train": {"max_steps": 10, "eval_steps": 5, "save_steps": 5, "logging_steps": 5},
            "resources": {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 20}}
    (tmp_path / "held.yaml").write_text(yaml.safe_dump(spec))
    run = subprocess.run([sys.executable, "launch.py", "run", str(tmp_path / "held.yaml")], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    record = next(iter(json.loads((tmp_path / "runs/held/manifest.json").read_text())["points"].values()))
    (repo / "workflow/node/entrypoint.py").write_text("raise SystemExit('the edited checkout ran')\n")
    subprocess.run(["scontrol", "release", record["job_id"]], check=True, timeout=60)

    done = wait_states(tmp_path / "runs", "held", {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, env)
    record = next(iter(done["points"].values()))
    log = Path(record["run_dir"], "log.txt").read_text()
    assert record["state"] == "COMPLETED", log[-3000:]
    assert f"code: {record['code']} (commit {record['commit']})" in log
    assert record["code"].startswith(str(tmp_path / "runs/held/code/")) and "edited checkout" not in log
