"""``status``, ``logs`` and ``list`` load neither pydantic nor the spec machinery."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT
from workflow.states import State


SPEC_MACHINERY = ("pydantic", "yaml", "workflow.spec", "workflow.launch.config", "workflow.launch.sweep",
                  "workflow.launch.plan", "torch", "mlflow")


@pytest.mark.parametrize("command", ["status", "logs", "list"])
def test_status_loads_no_spec_machinery(command, env, tmp_path):
    env = {**env, "WF_RUNS_DIR": str(tmp_path / "runs")}
    code = ("import os, sys\n"
            "from workflow.launch.manifest import Manifest, PointRecord\n"
            f"m = Manifest('s', 's.yaml')\n"
            f"m.points['h'] = PointRecord(0, 'p', 'h', {str(tmp_path / 'p')!r}, {State.COMPLETED.value!r}, 'local')\n"
            "m.save()\n"
            "import launch\n"
            f"assert launch.main([{command!r}] + (['s'] if {command!r} != 'list' else [])) == 0\n"
            f"print('LOADED=' + ','.join(m for m in {SPEC_MACHINERY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("LOADED="), result.stdout[-500:]
