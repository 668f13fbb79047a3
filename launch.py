#!/usr/bin/env python
"""Launch and track T5 fine-tuning sweeps.

    python launch.py sweep sweeps/lr.yaml [--dry_run] [--backend local] [key.path=value ...]
    python launch.py run jobs/demo.yaml [key.path=value ...]
    python launch.py validate <spec or sweep file>
    python launch.py status|logs|cancel <sweep>    python launch.py list
    python launch.py tiny_model                    python launch.py schema

This file is only the command line: it turns commands into library calls, prints the
library's typed errors, and exits non-zero on them. It never imports torch, transformers,
deepspeed or mlflow.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")  # skips an entry-point scan at start-up

import fire  # noqa: E402

from workflow import lifecycle, manifest as manifests  # noqa: E402
from workflow.errors import WorkflowError  # noqa: E402
from workflow.states import State  # noqa: E402


def _ui():
    from workflow import console

    return console


class Commands:
    """Cluster job launcher and experiment orchestrator for T5 fine-tuning."""

    def sweep(self, path: str, *overrides: str, dry_run: bool = False, backend: str | None = None,
              retry: str | None = None, force: bool = False, fail_fast: bool = False):
        """Expand a sweep file and run or submit every point that is neither done nor running.

        Args:
            path: the sweep file, e.g. sweeps/lr.yaml.
            overrides: key.path=value settings applied to every point, e.g. train.max_steps=50.
            dry_run: print the points and the exact backend request; submit nothing.
            backend: override the spec's backend (local).
            retry: "failed" resubmits only failed, cancelled and timed-out points.
            force: submit even when the memory planner says a point cannot fit its GPUs.
            fail_fast: stop the sweep after its first failed point (local: cancel the rest;
                slurm: the failing job cancels its array).
        """
        from workflow import sweep as sweeps

        extra = {"backend": backend} if backend else None
        return self._launch(sweeps.expand(path, overrides, extra), dry_run, retry, force, fail_fast)

    def run(self, path: str, *overrides: str, dry_run: bool = False, backend: str | None = None,
            force: bool = False):
        """Run one job spec (a sweep of one point named after the file).

        Args:
            path: the job spec, e.g. jobs/demo.yaml.
            overrides: key.path=value settings, e.g. train.learning_rate=1e-3.
            dry_run: print the plan and the backend request; submit nothing.
            backend: override the spec's backend (local).
            force: submit even when the memory planner says it cannot fit its GPUs.
        """
        from workflow import sweep as sweeps

        extra = {"backend": backend} if backend else None
        return self._launch(sweeps.single(path, overrides, extra), dry_run, None, force)

    def _launch(self, sweep, dry_run: bool, retry: str | None, force: bool = False, fail_fast: bool = False):
        from workflow import backends, launcher
        from workflow.plan import make_plan

        ui = _ui()
        plan = make_plan(sweep, force=force or dry_run, fail_fast=fail_fast)
        if dry_run:
            existing = manifests.load(sweep.name) if sweep.name in manifests.known_sweeps() else None
            chosen = launcher.select(plan, existing, retry)
            request = launcher.render(plan, chosen.submit) if chosen.submit else None
            ui.print_plan(sweep, plan.backend, request.describe() if request else "(nothing to submit)",
                          plan.data_counts, chosen.skipped)
            ui.print_memory(plan)
            return None
        with ui.sweep_progress(len(sweep.points)) as on_event:
            result = launcher.launch(plan, retry, on_event)
        for warning in result.warnings:
            ui.print_warning(warning)
        if result.skipped:
            ui.console.print(f"skipped {len(result.skipped)} point(s) already done or active", highlight=False)
        manifest = lifecycle.refresh(result.manifest)
        if not backends.get(plan.backend).waits:
            ui.console.print(ui.status_table(manifest, lifecycle.status_rows(manifest)))
            ui.console.print(f"submitted {len(result.submitted)} point(s). Follow them with: python launch.py status "
                             f"{sweep.name}  |  logs {sweep.name}  |  cancel {sweep.name}", highlight=False)
            return None
        for warning in launcher.reconcile(manifest):
            ui.print_warning(warning)
        self._summary(manifest, sweep.varying)
        failed = [r for r in manifest.points.values() if r.hash in result.submitted and r.state == State.FAILED]
        if failed:
            raise WorkflowError(f"{len(failed)} point(s) failed; see: python launch.py logs {sweep.name}")
        return None

    def _summary(self, manifest, varying):
        ui = _ui()
        rows, params, metrics = lifecycle.results(manifest, varying)
        ui.console.print(ui.results_table(rows, params, metrics, f"sweep {manifest.sweep}: results, best first"))
        ui.console.print(f"runs: {manifests.sweep_dir(manifest.sweep)}", highlight=False)
        ui.console.print(f"MLflow UI: {mlflow_ui_command(manifest.tracking_uri)}", highlight=False, soft_wrap=True)

    def validate(self, path: str, *overrides: str):
        """Validate a job spec or sweep file (and its data and model) without running anything."""
        from workflow import sweep as sweeps
        from workflow.plan import make_plan

        sweep = sweeps.expand(path, overrides) if _is_sweep(path) else sweeps.single(path, overrides)
        plan = make_plan(sweep)
        _ui().console.print(f"[green]ok[/] {path}: {len(sweep.points)} point(s), backend {plan.backend}",
                            highlight=False)

    def plan(self, path: str, *overrides: str):
        """Per-GPU memory of each point for every ZeRO stage and offload choice, and whether it fits.

        Model states use DeepSpeed's cold estimator formulas on the parameter count read from the
        model's config.json (or a flan-t5 preset); activations are estimated per micro batch.
        """
        from workflow import sweep as sweeps
        from workflow.plan import make_plan

        sweep = sweeps.expand(path, overrides) if _is_sweep(path) else sweeps.single(path, overrides)
        plan = make_plan(sweep, force=True)
        ui = _ui()
        if not plan.memory:
            ui.console.print("no GPU points with a known T5 config: nothing to plan", highlight=False)
        ui.print_memory(plan)

    def status(self, sweep: str):
        """Show each point's state, job id, elapsed time and latest metric."""
        from workflow import launcher

        ui = _ui()
        manifest = lifecycle.refresh(manifests.load(sweep))
        ui.console.print(ui.status_table(manifest, lifecycle.status_rows(manifest)))
        for warning in launcher.reconcile(manifest):
            ui.print_warning(warning)

    def sync(self, sweep: str):
        """Send metrics and params spooled during an MLflow outage into the same runs, and close
        runs whose job ended without closing them. Status does this too, automatically."""
        from workflow import launcher

        ui = _ui()
        manifest = lifecycle.refresh(manifests.load(sweep))
        for record in manifest.points.values():
            record.extra.pop("mlflow_closed", None)
        warnings = launcher.reconcile(manifest)
        for warning in warnings:
            ui.print_warning(warning)
        if warnings:
            raise WorkflowError(f"sync of {sweep} incomplete")
        ui.console.print(f"synced {len(manifest.points)} point(s) of {sweep} to MLflow", highlight=False)

    def logs(self, sweep: str, point: str | None = None, tail: int = 40):
        """Print the last lines of each point's log (point: index, hash prefix or name)."""
        ui = _ui()
        for record, lines in lifecycle.logs(sweep, point, int(tail)):
            ui.console.rule(f"{record.index} {record.name} [{record.state}]")
            ui.console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)

    def cancel(self, sweep: str, point: str | None = None):
        """Cancel the active points of a sweep (or one point)."""
        names = lifecycle.cancel(sweep, point)
        _ui().console.print(f"cancelled {len(names)} point(s)" + (": " + ", ".join(names) if names else ""))

    def list(self):
        """List the known sweeps."""
        ui = _ui()
        for name in manifests.known_sweeps():
            manifest = manifests.load(name)
            states: dict[str, int] = {}
            for record in manifest.points.values():
                states[record.state] = states.get(record.state, 0) + 1
            ui.console.print(f"{name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())), highlight=False)

    def compare(self, sweep: str, metric: str | None = None, top: int | None = None, csv: str | None = None):
        """Compare a sweep's points from MLflow, best first: the params that vary and the metrics.

        Args:
            sweep: the sweep name.
            metric: sort by this metric (default: exact_match, roc_auc, f1_at_k, ... whichever exists).
            top: show only the best N points.
            csv: also write the table to this CSV file.
        """
        from workflow.compare import compare, write_csv

        manifest = manifests.load(sweep)
        rows, params, metrics = compare(manifest, metric, int(top) if top else None)
        ui = _ui()
        ui.console.print(ui.results_table(rows, params, metrics, f"sweep {sweep}: best first by {metrics[0]}"))
        if csv:
            write_csv(Path(csv), rows, params, metrics)
            ui.console.print(f"wrote {csv}", highlight=False)

    def export(self, sweep: str, point: str | None = None, out: str | None = None):
        """Export a point's model as a standard HF model: merges LoRA adapters (checking the merged
        outputs against the adapter model) or consolidates a ZeRO checkpoint.

        Args:
            sweep: the sweep name.
            point: index, hash prefix or name (required when the sweep has several points).
            out: target folder (default: <run dir>/export).
        """
        from workflow.export import export

        record = lifecycle.single_point(manifests.load(sweep), point)
        run_dir = Path(record.run_dir)
        spec = json.loads((run_dir / "job.json").read_text())["spec"]
        model_dir = Path(spec["output_dir"]) if spec.get("output_dir") else run_dir / "model"
        result = export(model_dir, Path(out) if out else run_dir / "export", run_dir)
        diff = "" if result.max_abs_diff is None else f"; max |logit difference| {result.max_abs_diff:.2e}"
        _ui().console.print(f"exported ({result.kind}) {result.source} -> {result.out}{diff}", highlight=False)

    def tiny_model(self, name: str = "tiny-t5", data: str = "demo.json"):
        """Build the offline demo: mount/data/<data> and a tiny T5 in mount/models/<name>."""
        from workflow import setup_demo

        model_dir, data_path = setup_demo.build(name, data)
        _ui().console.print(f"data: {data_path}\nmodel: {model_dir}", highlight=False)

    def schema(self):
        """Print every job spec key with its type, default and meaning."""
        from workflow.spec import field_paths

        for path, info in field_paths().items():
            default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
            print(f"{path}: {default}  # {info.description or ''}")


def _is_sweep(path: str) -> bool:
    from workflow.config import read_yaml

    raw = read_yaml(Path(path))
    return any(k in raw for k in ("grid", "zip", "random", "points", "overrides", "max_points", "name"))


def mlflow_ui_command(uri: str | None) -> str:
    if uri and uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --port 5000"


def main(argv: list[str] | None = None) -> int:
    try:
        fire.Fire(Commands(), command=argv, name="launch.py")
    except WorkflowError as exc:
        _ui().print_error(exc)
        return 1
    except KeyboardInterrupt:
        _ui().print_warning("interrupted; running points were cancelled")
        return 130
    except fire.core.FireExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
