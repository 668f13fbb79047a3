"""Search efficiency: what an adaptive search buys over a grid, on the demo task with the tiny T5
on this machine (local backend, 2 points at once).

    python bench/search_efficiency.py                     # 3 seeds, about 40 minutes on 2 cores
    python bench/search_efficiency.py --seeds 1 --steps 150   # a quicker look

For each seed, over the same space (learning rate x warm-up):
- grid: 16 points (8 learning rates, log-spaced, x 2 warm-ups), each to the last step;
- random: 16 trials of random search, no pruning;
- tpe+asha: 16 trials of TPE with ASHA (rungs at min_steps x 3^k).
Each reports its best final eval loss (of the trials that ran to the last step) and the training
steps it consumed (the sum of the steps each point trained). Goal: tpe+asha reaches the grid's
best (within 1%, or better) with at most 40% of the grid's steps, median over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import machine  # noqa: E402

LR = (1.0e-4, 3.0e-2)
WARMUP = [0, 30]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300, help="train.max_steps of every point")
    p.add_argument("--eval_steps", type=int, default=25)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--out", default="/tmp/search_efficiency.json")
    return p.parse_args(argv)


def grid_lrs(n: int) -> list[float]:
    lo, hi = map(math.log, LR)
    return [float(f"{math.exp(lo + (hi - lo) * i / (n - 1)):.3g}") for i in range(n)]


def sweeps(a, seed: int) -> dict[str, dict]:
    common = {"train.max_steps": a.steps, "train.eval_steps": a.eval_steps, "train.save_steps": a.steps,
              "train.logging_steps": a.eval_steps, "train.seed": seed, "local.max_parallel": a.parallel}
    space = {"train.learning_rate": {"loguniform": list(LR)}, "train.warmup_steps": {"choice": WARMUP}}
    search = {"space": space, "trials": a.trials, "parallel": a.parallel, "seed": seed, "metric": "eval_loss"}
    return {
        "grid": {"overrides": common, "grid": {"train.learning_rate": grid_lrs(a.trials // len(WARMUP)),
                                               "train.warmup_steps": WARMUP}},
        "random": {"overrides": common, "search": {**search, "sampler": "random", "pruner": "none"}},
        "tpe+asha": {"overrides": common, "search": {**search, "sampler": "tpe",
                                                     "pruner": {"asha": {"min_steps": a.eval_steps, "reduction": 3}}}},
    }


def run(a, name: str, body: dict, work: Path) -> dict:
    """One sweep through the CLI; its best final eval loss and the steps it trained."""
    (work / "base.yaml").write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"),
                                                    "tracking": {"experiment": name}}))
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "name": name, **body}))
    env = {**os.environ, "WF_RUNS_DIR": str(work / "runs"), "WF_MLFLOW_DIR": str(work / "mlflow"),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "launch.py", "sweep", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    manifest = json.loads((work / "runs" / name / "manifest.json").read_text())
    steps, finals = 0, []
    for record in manifest["points"].values():
        rows = [json.loads(line) for line in Path(record["run_dir"], "metrics.jsonl").read_text().splitlines()]
        evals = [(r["step"], r["value"]) for r in rows if r.get("kind") == "metric" and r.get("key") == "eval_loss"]
        trained = max((r.get("step") or 0 for r in rows if r.get("kind") == "metric" and r.get("key") == "loss"),
                      default=0)
        steps += max(trained, max((s for s, _ in evals), default=0))
        if evals and max(s for s, _ in evals) >= a.steps:
            finals.append(min(v for s, v in evals if s >= a.steps))
    return {"best": min(finals) if finals else None, "steps": steps, "points": len(manifest["points"]),
            "finished": len(finals)}


def main(argv=None) -> dict:
    a = parse_args(argv)
    results: dict[str, list[dict]] = {}
    for seed in range(a.seeds):
        for name, body in sweeps(a, seed).items():
            with tempfile.TemporaryDirectory(prefix="search-eff-") as tmp:
                got = run(a, name.replace("+", "-"), body, Path(tmp))
            got["seed"] = seed
            results.setdefault(name, []).append(got)
            print(f"seed {seed} {name}: best eval_loss {got['best']}, {got['steps']} steps", flush=True)
    grid = {r["seed"]: r for r in results["grid"]}
    lines = [f"Search efficiency: demo task, tiny T5, {a.trials} points/trials, {a.steps} steps each, "
             f"{a.seeds} seed(s); {machine()}", "",
             "| method | best eval loss (median) | vs grid's best | training steps (median) | vs grid's steps |",
             "|---|---|---|---|---|"]
    summary = {}
    for name, rows in results.items():
        best = statistics.median(r["best"] for r in rows if r["best"] is not None)
        steps = statistics.median(r["steps"] for r in rows)
        gap = statistics.median((r["best"] - grid[r["seed"]]["best"]) / grid[r["seed"]]["best"] for r in rows)
        ratio = statistics.median(r["steps"] / grid[r["seed"]]["steps"] for r in rows)
        summary[name] = {"best": best, "steps": steps, "gap": gap, "steps_ratio": ratio}
        lines.append(f"| {name} | {best:.4f} | {gap:+.2%} | {steps:.0f} | {ratio:.2f}x |")
    adaptive = summary["tpe+asha"]
    met = adaptive["gap"] <= 0.01 and adaptive["steps_ratio"] <= 0.40
    lines += ["", f"Goal (tpe+asha within 1% of the grid's best with at most 40% of its steps): "
              f"{adaptive['gap']:+.2%}, {adaptive['steps_ratio']:.2f}x -> {'met' if met else 'NOT met'}"]
    print("\n".join(lines))
    report = {"args": vars(a), "results": results, "summary": summary, "goal_met": met, "markdown": "\n".join(lines)}
    Path(a.out).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
