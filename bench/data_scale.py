"""Large data: peak RSS and the time to the first training step for 10^4, 10^5 and 10^6 records,
the whole-file JSON path (baseline) against JSON lines read in blocks and tokenized once into a
memory-mapped Arrow cache (ours), and a second run on the same data (the cache is reused).

Each run is ``launch.py run jobs/demo.yaml`` (the tiny T5, one optimizer step). The time to the
first step is read from the point's log: from "starting on" to the first logged step. Peak RSS
is the largest resident set of the processes the run waited for (the launcher and the node).

    python bench/data_scale.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import ROOT, machine, python, table

WORDS = [w for pair in (("red", "rouge"), ("blue", "bleu"), ("big", "grand"), ("small", "petit"), ("dog", "chien"),
                        ("cat", "chat"), ("old", "vieux"), ("fast", "rapide")) for w in pair]
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        out.append({"prompt": "translate: " + " ".join(words), "completion": " ".join(reversed(words))})
    return out


def write(folder: Path, n: int) -> tuple[str, str]:
    """The same records as one JSON document and as JSON lines; returns both data names."""
    train, evaluation = records(n), records(100, seed=1)
    (folder / f"scale{n}.json").write_text(json.dumps({"train": train, "eval": evaluation}))
    with (folder / f"scale{n}.jsonl").open("w") as handle:
        for split, rows in (("train", train), ("eval", evaluation)):
            for row in rows:
                handle.write(json.dumps({**row, "split": split}) + "\n")
    return f"scale{n}.json", f"scale{n}.jsonl"


def run(env: dict, data: str, seed: int) -> tuple[float, float]:
    """(seconds from node start to the first step, peak RSS in GiB) of one run."""
    name = f"{data.replace('.', '_')}-{seed}"
    spec = Path(env["WF_RUNS_DIR"]).parent / f"{name}.yaml"
    spec.write_text(json.dumps({"base": str(ROOT / "jobs/demo.yaml"), "data_name": data,
                                "train": {"max_steps": 1, "logging_steps": 1, "eval_steps": 1000, "seed": seed,
                                          "max_source_length": 32, "max_target_length": 32}}))
    # A fresh wrapper per run: its RUSAGE_CHILDREN peak covers this run's processes only.
    wrapper = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:])\n"
               "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(done.returncode)")
    proc = subprocess.run([python(), "-c", wrapper, python(), "launch.py", "run", str(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    peak = int(proc.stdout.rsplit("PEAK_KIB", 1)[1].split()[0])
    log = next((Path(env["WF_RUNS_DIR"]) / name).glob("*/log.txt")).read_text().splitlines()
    start = next(line for line in log if "starting on" in line)
    step = next(line for line in log if re.search(r"step 1/1 .*loss", line))
    seconds = (_time(step) - _time(start)).total_seconds()
    return seconds, peak / 2**20  # KiB -> GiB


def _time(line: str) -> datetime:
    return datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="data-scale-"))
    (folder / "data").mkdir()
    os.symlink(ROOT / "mount/models", folder / "models")
    env = {**os.environ, "WF_MOUNT_DIR": str(folder), "WF_RUNS_DIR": str(folder / "runs"),
           "WF_MLFLOW_DIR": str(folder / "mlflow"), "HF_HUB_OFFLINE": "1"}
    rows, started = [], time.time()
    for n in sorted(args.sizes):
        whole, lines = write(folder / "data", n)
        first = run(env, lines, seed=1)
        second = run(env, lines, seed=2)
        base = run(env, whole, seed=1)
        rows.append([f"{n:,}", f"{base[0]:.1f}", f"{first[0]:.1f}", f"{second[0]:.1f}",
                     f"{first[0] / second[0]:.1f}x", f"{base[1]:.2f}", f"{max(first[1], second[1]):.2f}"])
        print(f"{n:,} records done ({time.time() - started:.0f} s)", flush=True)
    print(f"\nLarge data on {machine()}\n")
    print(table(["records", "JSON: s to step 1", "JSONL first: s", "JSONL again: s", "first / again",
                 "JSON: peak GiB", "JSONL: peak GiB"], rows))


if __name__ == "__main__":
    main()
