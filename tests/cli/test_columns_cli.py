"""`status` at 80 columns, as a terminal of that width shows it: no line is wider."""

from __future__ import annotations

from tests.helpers import run_cli
from workflow.launch.manifest import Manifest, PointRecord
from workflow.states import State

ERROR = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity; "
         "75.12 GiB already allocated; 1.02 GiB free)")


def test_status_fits_80_columns(isolated, env):
    manifest = Manifest("mymax-bs", "sweeps/mymax_bs.yaml")
    names = ["mymax[resources.gpus_per_node=1]", "train_batch_size=8,train.seed=5", "train_batch_size=32"]
    for i, state in enumerate([State.COMPLETED, State.FAILED, State.OUT_OF_MEMORY, State.CANCELLED]):
        run_dir = manifest.path.parent / f"p{i}"
        run_dir.mkdir(parents=True)
        manifest.points[f"{i:012x}"] = PointRecord(i, names[i % 3], f"{i:012x}", str(run_dir), state=state,
                                                   backend="local", error=ERROR if state == State.FAILED else None)
    manifest.save()
    done = run_cli("status", "mymax-bs", env={**env, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, done.stdout
    for word in ("COMPLETED", "FAILED", "OUT_OF_MEMORY", "CANCELLED", "gpus_per_node=1]", "seed=5", "RuntimeError"):
        assert word in done.stdout, word
