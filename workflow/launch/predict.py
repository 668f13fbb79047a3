"""``launch.py predict``: batch inference of a trained point (or any model folder) on new data.

Everything is checked before anything runs: the model folder, the input records, the decoding
overrides (validated as part of the point's spec). The work runs from a code snapshot, as
training jobs do: locally, or as a SLURM job array that shards the records (the shard that
completes the set merges them). The node side is ``workflow.node.predict``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from workflow import data
from workflow.errors import JobError, Problem, SpecError
from workflow.jsonio import write_json
from workflow.launch import config, lifecycle, manifest as manifests, snapshot
from workflow.launch.manifest import PointRecord
from workflow.paths import mlflow_dir, mount_dir, resolve_tracking_uri, runs_dir
from workflow.rundir import RunDir
from workflow.secrets import redact
from workflow.spec import JobSpec
from workflow.tree import deep_merge, flatten

CLI = "<command line>"
PREDICT_KEYS = ("generate.", "train.eval_batch_size", "train.max_source_length", "train.precision", "resources.",
                "slurm.", "tracking.")
ENTRYPOINT = "workflow.node.predict"


@dataclass(frozen=True)
class PredictJob:
    folder: RunDir
    spec: JobSpec
    model: Path
    inputs: Path
    out: Path
    records: int
    code: snapshot.Snapshot
    point: PointRecord | None  # None with --model
    run_name: str


def prepare_predict_job(sweep: str | None, point: str | None, inputs: str, out: str | None, model: str | None,
                        overrides=(), allow_dirty: bool = False) -> PredictJob:
    """Check the model, the inputs and the overrides, and describe the job (nothing is written).
    Every path is made absolute here, against where the command runs: the job runs elsewhere."""
    record, path = None, data.find(inputs)
    if model:
        model_dir = Path(model).expanduser().resolve()
        spec, root = JobSpec(model_init_path=str(model_dir), data_name=str(path)), runs_dir() / "predict"
    elif sweep:
        record = lifecycle.single_point(manifests.load(sweep), point)
        job = record.rundir.read_job()
        if "spec" not in job:  # a SLURM job writes its job.json when it starts
            raise JobError(f"Point {record.name} of sweep {sweep} has not started", [Problem(
                str(record.rundir.job), None, "a completed point", f"state {record.state}, no job.json yet",
                f"python launch.py status {sweep}")])
        spec = JobSpec.model_validate(job["spec"])
        model_dir, root = spec.model_dir(record.rundir), manifests.sweep_dir(sweep)
    else:
        raise SpecError("Nothing to predict with", [Problem(CLI, "sweep", "a sweep (and point), or --model <folder>",
                                                            "neither")])
    spec = _with_overrides(spec, overrides)
    if not ((model_dir / "config.json").is_file() or (model_dir / "adapter_config.json").is_file()):
        raise JobError(f"No saved model in {model_dir}", [Problem(str(model_dir), None, "a model folder (config.json "
                       "or adapter_config.json): a completed point, or --model <folder>", "none found")])
    records = len(data.load_inputs(path, spec.task))
    digest = hashlib.sha256(f"{model_dir}|{path}|{spec.generate.model_dump_json()}".encode()).hexdigest()[:8]
    folder = RunDir((record.rundir.root if record else root) / "predict" / f"{path.stem}-{digest}")
    code = snapshot.take(root, allow_dirty)
    code.check()
    name = f"predict {record.name if record else model_dir.name}: {path.name}"
    target = Path(out).expanduser().resolve() if out else folder.predictions
    return PredictJob(folder, spec, model_dir, path, target, records, code, record, name)


def _with_overrides(spec: JobSpec, overrides) -> JobSpec:
    nested = config.parse_overrides(overrides)
    wrong = [k for k in flatten(nested) if not k.startswith(PREDICT_KEYS)]
    if wrong:
        raise SpecError("Overrides predict cannot use", [Problem(
            CLI, k, "a decoding or resource key (generate.*, train.eval_batch_size, train.max_source_length, "
            "resources.*, slurm.*, tracking.*)", "a training key") for k in wrong])
    return config.validate(deep_merge(spec.model_dump(mode="json"), nested), CLI)


def write(job: PredictJob, shards: int) -> None:
    """The snapshot and job.json, the node's whole input; parts of an earlier attempt go."""
    job.code.write()
    job.folder.root.mkdir(parents=True, exist_ok=True)
    for stale in [*job.folder.root.glob("part-*.json"), job.folder.state]:
        stale.unlink(missing_ok=True)
    point = job.point
    context = {
        "model": str(job.model), "inputs": str(job.inputs), "out": str(job.out), "shards": shards,
        "tracking_uri": redact(resolve_tracking_uri(job.spec.tracking.uri)), "experiment": job.spec.tracking.experiment,
        "parent_run_id": point.mlflow_run_id if point else None, "run_name": job.run_name,
        "tags": {"kind": "predict", "git_commit": job.code.commit,
                 **({"point_hash": point.hash, "point_name": point.name} if point else {})},
        "env": {"WF_MOUNT_DIR": str(mount_dir()), "WF_RUNS_DIR": str(runs_dir()), "WF_MLFLOW_DIR": str(mlflow_dir())},
    }
    spec = config.absolute_paths(job.spec.model_dump(mode="json"))  # overrides may name files
    write_json(job.folder.job, {"spec": spec, "context": context})


def run_local(job: PredictJob) -> Path:
    """One process on this machine, from the snapshot; returns the output file."""
    write(job, 1)
    env = {**os.environ, "PYTHONPATH": str(job.code.root)}
    with job.folder.log.open("ab") as log:
        done = subprocess.run([sys.executable, "-m", ENTRYPOINT, str(job.folder.root), "0", "1"], cwd=job.code.root,
                              env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = job.folder.log.read_text(errors="replace").splitlines()[-5:]
        raise JobError(f"predict failed (exit {done.returncode}); see {job.folder.log}",
                       [Problem(str(job.folder.log), None, "a finished prediction", " | ".join(tail)[-500:])])
    return job.out


def submit_slurm(job: PredictJob, shards: int) -> list[str]:
    """A SLURM array of ``shards`` tasks over the records; returns their job ids."""
    import submitit

    from workflow.launch.backends.slurm import executor_parameters
    from workflow.node.predict import PredictShard

    write(job, shards)
    executor = submitit.SlurmExecutor(folder=str(job.folder.root / ".submitit" / "%j"),
                                      python=job.spec.slurm.python or sys.executable)
    params = executor_parameters(job.spec, f"predict-{job.folder.root.name}", str(job.code.root))
    executor.update_parameters(**params, array_parallelism=min(shards, job.spec.slurm.array_parallelism))
    with executor.batch():
        jobs = [executor.submit(PredictShard(), str(job.folder.root), i, shards) for i in range(shards)]
    return [j.job_id for j in jobs]
