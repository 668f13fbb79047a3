"""P1, CLI latency: `launch.py sweep <1,000-point sweep> --dry_run` against
`python -c "import fire, rich, yaml"` (the floor of any fire+rich+yaml CLI), and the
10,000-point dry run against the 1,000-point one (expansion must be linear).

    python bench/cli_latency.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import yaml

from common import ROOT, compiled, machine, median, paired, python, table, timed


def sweep_file(folder: Path, n: int) -> Path:
    path = folder / f"bench{n}.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": f"bench{n}",
                                    "max_points": n, "grid": {"train.seed": list(range(n))}}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compiled()
    folder = Path(tempfile.mkdtemp(prefix="p1-"))
    env = {**os.environ, "WF_RUNS_DIR": str(folder / "runs"), "WF_MLFLOW_DIR": str(folder / "mlflow")}
    if not (ROOT / "mount/models/tiny-t5/config.json").is_file():
        timed([python(), "launch.py", "tiny_model"], env)
    small, large = sweep_file(folder, 1000), sweep_file(folder, 10000)
    dry = lambda path: (lambda: timed([python(), "launch.py", "sweep", str(path), "--dry_run"], env))
    floor = lambda: timed([python(), "-c", "import fire, rich, yaml"], env)
    ours, base, ratios = paired(dry(small), floor, args.runs)
    big, _, scale = paired(dry(large), dry(small), args.runs)
    print(f"P1 CLI latency on {machine()}, {args.runs} runs each\n")
    print(table(["measure", "ours (median s)", "baseline (median s)", "median ratio", "goal"], [
        ["1,000-point dry run vs import fire, rich, yaml", f"{median(ours):.3f}", f"{median(base):.3f}",
         f"{median(ratios):.2f}x", "<= 3.3x"],
        ["10,000-point vs 1,000-point dry run", f"{median(big):.3f}", f"{median(ours):.3f}",
         f"{median(scale):.2f}x", "~10x (linear)"],
    ]))


if __name__ == "__main__":
    main()
