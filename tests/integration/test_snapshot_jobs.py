"""A job edited after submission runs the submitted code (a held job on the SLURM test cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import ROOT


def test_a_job_edited_after_submission_runs_the_submitted_code(tmp_path, env):
    """A held SLURM job; the checkout's job entry is broken before the job is released."""
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
    (repo / "workflow/node/run.py").write_text("raise SystemExit('the edited checkout ran')\n")
    subprocess.run(["scontrol", "release", record["job_id"]], check=True, timeout=60)

    done = wait_states(tmp_path / "runs", "held", {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, env)
    record = next(iter(done["points"].values()))
    log = Path(record["run_dir"], "log.txt").read_text()
    assert record["state"] == "COMPLETED", log[-3000:]
    assert f"code: {record['code']} (commit {record['commit']})" in log
    assert record["code"].startswith(str(tmp_path / "runs/held/code/")) and "edited checkout" not in log
