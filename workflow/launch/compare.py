"""``launch.py compare``: a sweep's points read back from MLflow, best first.

Imports mlflow (through the MLflow helper's ``child_runs``) because it reads the tracking store; the
planning, validation and submission paths never import this module.
"""

from __future__ import annotations

import csv
from pathlib import Path

from workflow.errors import ManifestError, Problem, WorkflowError, suggest
from workflow.launch.manifest import Manifest
from workflow.launch.mlflow_helper import child_runs
from workflow.metrics import primary_metric, rank, table_metrics
from workflow.paths import usable_tracking_uri
from workflow.states import State


def compare(manifest: Manifest, metric: str | None, top: int | None) -> tuple[list[dict], list[str], list[str]]:
    """Rows of (point, status, varying params, final metrics) from the sweep's child runs."""
    if not manifest.tracking_uri or not manifest.experiment:
        raise ManifestError(f"Sweep {manifest.sweep} was launched without MLflow tracking", [Problem(
            str(manifest.path), "tracking_uri", "a sweep launched with tracking", "none")])
    runs = child_runs(usable_tracking_uri(manifest.tracking_uri), manifest.experiment, manifest.sweep_id)
    names = sorted({m for r in runs for m in r["metrics"]})
    if metric is not None and metric not in names:
        close = suggest(metric, names)
        raise ManifestError(f"No metric '{metric}' in sweep {manifest.sweep}", [Problem(
            "<command line>", "--metric", "a logged metric", repr(metric),
            close if close and close.startswith("did you mean") else "logged: " + (", ".join(names) or "none yet"))])
    key = metric or primary_metric(names)
    logged = [r for r in runs if r["params"]]  # runs that never started have no params
    common = set.intersection(*(set(r["params"]) for r in logged)) if logged else set()
    params = sorted(p for p in common if not p.startswith(("version.", "data.", "run_name", "tracking.", "model."))
                    and len({r["params"][p] for r in logged}) > 1)
    runs.sort(key=lambda r: rank(r["metrics"].get(key), key))
    rows = [{"point": r["name"], "hash": r["point_hash"], "state": _state(manifest, r), "params": r["params"],
             "metrics": r["metrics"]} for r in runs[:top]]
    return rows, params, table_metrics(names, key)


def _state(manifest: Manifest, run: dict) -> str:
    """The point's state as status and sweep show it (not MLflow's run status)."""
    record = manifest.points.get(run["point_hash"] or "")
    return str(record.state) if record else str(State.from_mlflow(run["status"]))


def write_csv(path: Path, rows: list[dict], params: list[str], metrics: list[str]) -> None:
    if not path.parent.is_dir():
        raise WorkflowError(f"Cannot write {path}", [Problem("<command line>", "--csv", "a file in an existing folder",
                                                              str(path), f"create {path.parent} first")])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["point", "state", *params, *metrics])
        for row in rows:
            writer.writerow([row["point"], row["state"], *(row["params"].get(p, "") for p in params),
                             *(row["metrics"].get(m, "") for m in metrics)])


def plot(rows: list[dict], params: list[str], metric: str, path: Path) -> Path:
    """The sweep's metric against each varying parameter, one panel each (log scale for positive
    numbers spanning more than 20x, categories in order of appearance)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = params or ["point"]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 4), squeeze=False)
    for ax, param in zip(axes[0], shown):
        pairs = [(r["params"].get(param, r["point"]), r["metrics"].get(metric)) for r in rows]
        pairs = [(x, y) for x, y in pairs if y is not None]
        numbers = [_number(x) for x, _ in pairs]
        if pairs and all(n is not None for n in numbers):
            ax.scatter(numbers, [y for _, y in pairs], color="tab:blue")
            if min(numbers) > 0 and max(numbers) / min(numbers) > 20:
                ax.set_xscale("log")
        else:
            names = list(dict.fromkeys(str(x) for x, _ in pairs))
            ax.scatter([names.index(str(x)) for x, _ in pairs], [y for _, y in pairs], color="tab:blue")
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set(xlabel=param, ylabel=metric, title=f"{metric} by {param.rsplit('.', 1)[-1]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
