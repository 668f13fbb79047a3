"""Shared helpers for the benchmarks: timing, medians, the machine, markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def compiled() -> None:
    """Byte-compile the tool, as any install does: a shell with PYTHONDONTWRITEBYTECODE=1 would
    otherwise compile its modules again at every command, which the floors (installed packages,
    compiled when installed) never pay."""
    subprocess.run([python(), "-m", "compileall", "-q", "launch.py", "workflow"], cwd=ROOT, check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def timed(argv: list[str], env: dict | None = None, cwd: Path = ROOT) -> float:
    """Wall time of one command; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stderr[-2000:]}")
    return took


def paired(ours, baseline, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Alternate the two sides `runs` times; returns (ours, baseline, per-pair ratios)."""
    a, b = [], []
    for _ in range(runs):
        b.append(baseline())
        a.append(ours())
    return a, b, [x / y for x, y in zip(a, b)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def python() -> str:
    return sys.executable
