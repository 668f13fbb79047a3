"""A new sqlite tracking store is created once: several processes that first open the same new
store at the same moment (a launcher's helper, jobs, predict) all succeed, and the store works
after. Without the lock they migrate the new database at once and fail
(``table ... already exists``, ``duplicate column name``, alembic errors)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

USERS = 6  # processes that open the new store together

# Each says it is ready (past its imports), waits for the start file, then opens the store and
# creates its own experiment and run.
FIRST_USER = """
import sys, time
from pathlib import Path
folder, uri, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
from workflow.tracking import client, experiment_id
(folder / f"ready-{name}").touch()
while not (folder / "start").exists():
    time.sleep(0.002)
mlflow = client(uri)
run = mlflow.create_run(experiment_id(mlflow, name, uri), run_name=name)
print(run.info.run_id)
"""


def first_users(folder: Path, uri: str, count: int) -> list[subprocess.Popen]:
    """``count`` processes that open the store at the same moment (a start file they all wait for)."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    names = [f"user-{i}" for i in range(count)]
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_USER, str(folder), uri, name], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    deadline = time.time() + 120
    while time.time() < deadline and not all((folder / f"ready-{n}").exists() or p.poll() is not None
                                             for n, p in zip(names, procs)):
        time.sleep(0.01)
    (folder / "start").touch()
    return procs


def test_first_users_of_a_new_store_all_succeed(tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    procs = first_users(tmp_path, uri, USERS)
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    failed = [err.strip().splitlines()[-1] if err.strip() else f"exit {code}" for code, out, err in results if code]
    assert failed == []
    run_ids = [out.strip() for _, out, _ in results]
    assert len(set(run_ids)) == USERS and all(run_ids)

    from mlflow.tracking import MlflowClient

    store = MlflowClient(uri)
    names = {e.name for e in store.search_experiments()}
    assert {f"user-{i}" for i in range(USERS)} <= names
    assert {store.get_run(r).info.run_name for r in run_ids} == {f"user-{i}" for i in range(USERS)}
