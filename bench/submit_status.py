"""P2 submission and P3 status on the real SLURM (start it with scripts/slurm-cluster.sh start;
then eval "$(bash scripts/slurm-cluster.sh env)" points the SLURM commands at it).

P2: `launch.py sweep` of an N-point sweep (--backend slurm, held so nothing runs) against bare
submitit executor.batch() of N trivial functions in arrays of 1,000 (bench/bare_submitit.py),
both timed as whole commands. The tool's time includes planning and N run directories. Its
MLflow parent run (in the default sqlite store, or a real `mlflow server` on 127.0.0.1) is
registered by a helper process that the launcher does not wait for: its time is reported apart,
and the bench waits for it before the next timing, so it never overlaps one. The child runs are
created by the jobs when they start. SLURM commands are counted by wrappers on PATH.
P3: `launch.py status` of that sweep: the SLURM commands it issues, and its time against one
bare `sacct -X -j <arrays>`.

    python bench/submit_status.py --runs 3 --points 1000 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import ROOT, compiled, machine, median, paired, python, table, timed

sys.path.insert(0, str(ROOT / "tests"))
from mlflow_server import MlflowServer  # noqa: E402  the tests' real server on 127.0.0.1

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
    path = folder / f"p2-{n}.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "p2", "max_points": n,
                                    "overrides": {"backend": "slurm", "slurm.sbatch": {"hold": True}},
                                    "grid": {"train.seed": list(range(n))}}))
    return path


def cancel(name: str) -> None:
    subprocess.run(["scancel", "--name", name], check=False)
    for _ in range(600):  # the next submission must not queue behind MaxJobCount
        if not subprocess.run(["squeue", "-h", "--name", name, "-o", "%i"], capture_output=True,
                              text=True).stdout.strip():
            return
        time.sleep(0.5)


def registered(runs: Path, started: float) -> float:
    """Seconds from the submission's start until its helper process wrote the parent run's id
    (the launcher does not wait for it). Waited for here, so that the helper's work never runs
    during the next timing."""
    reply = runs / "p2/parent.json"
    for _ in range(1500):
        if reply.is_file():
            assert "parent_run_id" in reply.read_text(), reply.read_text()
            return reply.stat().st_mtime - started
        time.sleep(0.1)
    raise AssertionError(f"no {reply}")


def measure(base: Path, bin_dir: Path, env: dict, n: int, runs: int, tracking: str, uri: str | None) -> dict:
    sweep = sweep_file(base, n)
    counter = {"i": 0, "sbatch": []}

    def run_env(tag: str) -> dict:
        out = {**env, "WF_RUNS_DIR": str(base / f"runs-{tag}"), "WF_MLFLOW_DIR": str(base / f"mlflow-{tag}")}
        if uri:
            out["MLFLOW_TRACKING_URI"] = uri
        return out

    def ours() -> float:
        counter["i"] += 1
        calls(bin_dir)
        tag = f"{n}-{tracking}-{counter['i']}"
        started = time.time()
        took = timed([python(), "launch.py", "sweep", str(sweep)], run_env(tag))
        counter["sbatch"].append(calls(bin_dir).count("sbatch"))
        counter.setdefault("parent", []).append(registered(base / f"runs-{tag}", started))
        cancel("p2")
        return took

    def bare() -> float:
        took = timed([python(), str(ROOT / "bench/bare_submitit.py"), str(base / "bare/%j"), str(n), "1000"], env)
        cancel("bare")
        return took

    submit, baseline, ratios = paired(ours, bare, runs)

    # P3: one more (held) submission to read back
    status_env = run_env(f"{n}-{tracking}-status")
    started = time.time()
    timed([python(), "launch.py", "sweep", str(sweep)], status_env)
    registered(base / f"runs-{n}-{tracking}-status", started)
    arrays = sorted(set(subprocess.run(["squeue", "-h", "--name", "p2", "-o", "%F"], capture_output=True,
                                       text=True).stdout.split()))
    calls(bin_dir)
    commands = []

    def status() -> float:
        took = timed([python(), "launch.py", "status", "p2"], status_env)
        commands.append(calls(bin_dir))
        return took

    def sacct() -> float:
        return timed(["sacct", "-n", "-X", "-j", ",".join(arrays)])

    stat, bare_sacct, stat_ratios = paired(status, sacct, runs)
    start_up = median([timed([python(), "-c", "pass"]) for _ in range(runs)])  # the floor of any Python command
    cancel("p2")
    return {"n": n, "tracking": tracking, "submit": median(submit), "bare": median(baseline),
            "parent": median(counter["parent"]),
            "ratio": median(ratios), "status": median(stat), "sacct": median(bare_sacct),
            "status_ratio": median(stat_ratios), "sbatch": counter["sbatch"], "commands": commands[0],
            "start_up": start_up}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--points", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--tracking", nargs="+", default=["sqlite", "server"], choices=["sqlite", "server"])
    args = parser.parse_args()
    compiled()
    base = Path(tempfile.mkdtemp(prefix="p2-"))
    bin_dir = shims(base / "bin")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = MlflowServer(base / "server").start(timeout=180) if "server" in args.tracking else None
    results = []
    try:
        for n in args.points:
            for tracking in args.tracking:
                results.append(measure(base, bin_dir, env, n, args.runs, tracking,
                                       server.uri if tracking == "server" else None))
    finally:
        if server:
            server.kill()
    print(f"P2/P3 on {machine()}, real SLURM, {args.runs} runs each\n")
    rows = []
    for r in results:
        rows.append([f"submit {r['n']:,} points ({r['tracking']}) vs bare submitit", f"{r['submit']:.2f}",
                     f"{r['bare']:.2f}", f"{r['ratio']:.2f}x", "<= 2.3x"])
        rows.append([f"status of {r['n']:,} jobs ({r['tracking']}) vs one bare sacct", f"{r['status']:.2f}",
                     f"{r['sacct']:.3f}", f"{r['status_ratio']:.2f}x", "<= 3x"])
    by = {(r["n"], r["tracking"]): r for r in results}
    for tracking in args.tracking:
        if (1000, tracking) in by and (10000, tracking) in by:
            small, large = by[(1000, tracking)], by[(10000, tracking)]
            rows.append([f"10,000 vs 1,000 points ({tracking}): submit", f"{large['submit']:.2f}",
                         f"{small['submit']:.2f}", f"{large['submit'] / small['submit']:.2f}x", "<= 11x"])
            rows.append([f"10,000 vs 1,000 points ({tracking}): status", f"{large['status']:.2f}",
                         f"{small['status']:.2f}", f"{large['status'] / small['status']:.2f}x", "<= 11x"])
    print(table(["measure", "ours (median s)", "baseline (median s)", "median ratio", "goal"], rows))
    for r in results:
        print(f"\n{r['n']} points ({r['tracking']}): sbatch calls per submission {r['sbatch']}; "
              f"SLURM commands per status {len(r['commands'])} {r['commands']}; the parent run registered "
              f"{r['parent']:.2f} s after the submission started (in the background, not timed above); "
              f"`python -c pass` takes {r['start_up']:.3f} s here ({r['start_up'] / r['sacct']:.2f}x the bare sacct)")


if __name__ == "__main__":
    main()
