"""P2 submission and P3 status on the real SLURM (start it with scripts/slurm-cluster.sh start;
then eval "$(bash scripts/slurm-cluster.sh env)" points the SLURM commands at it).

P2: `launch.py sweep` of a 1,000-point sweep (--backend slurm, held so nothing runs) against bare
submitit executor.batch() of 1,000 trivial functions (bench/bare_submitit.py), both timed as
whole commands. The tool's time includes planning, 1,000 run directories and registering 1,000
MLflow runs (sqlite). SLURM commands are counted by wrappers on PATH.
P3: `launch.py status` of that sweep: the SLURM commands it issues, and its time against one
bare `sacct -j <array>`.

    python bench/submit_status.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from common import ROOT, machine, median, paired, python, table, timed

COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "sinfo", "scancel")


def shims(folder: Path) -> Path:
    """Wrappers that log each call of a SLURM command, then run the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        real = shutil.which(name)
        (folder / name).write_text(f'#!/bin/sh\necho {name} >> "{folder}/calls.log"\nexec {real} "$@"\n')
        (folder / name).chmod(0o755)
    return folder


def calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    text = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return text


def sweep_file(folder: Path, n: int) -> Path:
    path = folder / "p2.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "p2", "max_points": n,
                                    "overrides": {"backend": "slurm", "slurm.sbatch": {"hold": True}},
                                    "grid": {"train.seed": list(range(n))}}))
    return path


def cancel(name: str) -> None:
    subprocess.run(["scancel", "--name", name], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="p2-"))
    bin_dir = shims(base / "bin")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    sweep = sweep_file(base, args.points)
    counter = {"i": 0, "sbatch": []}

    def ours() -> float:
        counter["i"] += 1
        run_env = {**env, "WF_RUNS_DIR": str(base / f"runs{counter['i']}"),
                   "WF_MLFLOW_DIR": str(base / f"mlflow{counter['i']}")}
        calls(bin_dir)
        took = timed([python(), "launch.py", "sweep", str(sweep)], run_env)
        counter["sbatch"].append(calls(bin_dir).count("sbatch"))
        counter["last_env"] = run_env
        cancel("p2")
        return took

    def bare() -> float:
        took = timed([python(), str(ROOT / "bench/bare_submitit.py"), str(base / "bare/%j"), str(args.points)], env)
        cancel("bare")
        return took

    submit, baseline, ratios = paired(ours, bare, args.runs)

    # P3: one more (held) submission to read back; wait for accounting to see it
    run_env = {**env, "WF_RUNS_DIR": str(base / "status"), "WF_MLFLOW_DIR": str(base / "status-mlflow")}
    timed([python(), "launch.py", "sweep", str(sweep)], run_env)
    array = subprocess.run(["squeue", "-h", "--name", "p2", "-o", "%F"], capture_output=True, text=True).stdout.split()[0]
    calls(bin_dir)
    status_commands = []

    def status() -> float:
        took = timed([python(), "launch.py", "status", "p2"], run_env)
        status_commands.append(calls(bin_dir))
        return took

    def sacct() -> float:
        return timed(["sacct", "-n", "-X", "-j", array])

    stat, bare_sacct, stat_ratios = paired(status, sacct, args.runs)
    cancel("p2")
    print(f"P2/P3 on {machine()}, real SLURM, {args.points} points, {args.runs} runs each\n")
    print(table(["measure", "ours (median s)", "baseline (median s)", "median ratio", "goal"], [
        [f"submit {args.points} points vs bare submitit batch", f"{median(submit):.2f}", f"{median(baseline):.2f}",
         f"{median(ratios):.2f}x", "<= 1.2x"],
        [f"status of {args.points} jobs vs one bare sacct", f"{median(stat):.2f}", f"{median(bare_sacct):.3f}",
         f"{median(stat_ratios):.2f}x", "<= 2x"],
    ]))
    print(f"\nsbatch calls per submission: {counter['sbatch']} (one per MaxArraySize chunk)")
    print(f"SLURM commands per status: {[len(c) for c in status_commands]} {status_commands[0]} (goal: <= 2)")


if __name__ == "__main__":
    main()
