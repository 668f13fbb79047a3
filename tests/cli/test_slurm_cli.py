"""The SLURM backend through the command line, against stand-in SLURM commands (fake_slurm.py)."""

from __future__ import annotations

import json
import os

from fake_slurm import sweep_of
from helpers import run_cli


def test_an_array_sbatch_refuses_is_a_clear_error_and_nothing_is_lost(tmp_path, fake_slurm, env):
    """A QOS or account limit: sbatch exits 1. The launcher says so in SLURM's words, with what was
    and was not submitted; the points stay PLANNED, so running the command again submits them."""
    (fake_slurm / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Job violates "
                                       "accounting/QOS policy' >&2\nexit 1\n")
    (fake_slurm / "sbatch").chmod(0o755)
    sweep = sweep_of(tmp_path, 3, backend="slurm")
    result = run_cli("sweep", str(sweep), env={**env, "PATH": os.environ["PATH"]})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "error: sbatch refused array 1 of 1" in result.stderr
    assert "Job violates accounting/QOS policy" in result.stderr
    assert "0 point(s) in the arrays before it were submitted" in result.stderr and "the other 3 were not" in \
        result.stderr
    records = json.loads((tmp_path / "runs/unit/manifest.json").read_text())["points"].values()
    assert {r["state"] for r in records} == {"PLANNED"} and len(records) == 3
