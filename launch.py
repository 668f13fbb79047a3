#!/usr/bin/env python
"""Launch and track T5 fine-tuning sweeps.

    python launch.py sweep sweeps/lr.yaml [--dry_run] [--backend local] [key.path=value ...]
    python launch.py run jobs/demo.yaml [key.path=value ...]
    python launch.py validate <spec or sweep file>
    python launch.py status|logs|cancel <sweep>    python launch.py list
    python launch.py tiny_model                    python launch.py schema

This file is only the command line: it turns commands into calls of the library (the launch
driver, the lifecycle commands), prints what they return and the library's typed errors, and
exits non-zero on them. It never imports torch, transformers, deepspeed or mlflow.
"""

from __future__ import annotations

import gc
import inspect
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")  # skips an entry-point scan at start-up

from workflow.errors import WorkflowError  # noqa: E402
from workflow.launch import lifecycle, manifest as manifests  # noqa: E402
from workflow.launch.early import Started  # noqa: E402


def start_early(argv: list[str]) -> Started:
    """What the command will ask other programs, started now, so that it runs while the rest of
    the command line loads: ``status <sweep>``, its squeue and sacct; ``sweep`` and ``run``, the
    git commands of the code snapshot. The other commands start nothing."""
    started = Started()
    if len(argv) >= 2 and argv[0] == "status" and not argv[1].startswith("-"):
        lifecycle.start_queries(argv[1], started)
    elif argv and argv[0] in ("sweep", "run"):
        from workflow.launch import snapshot  # not every command's start-up

        snapshot.start(started)
    return started


def _ui():
    from workflow.launch import console

    return _loaded(console)


def _driver():
    from workflow.launch import driver

    return _loaded(driver)


def _loaded(module):
    """``module``, once a command has imported it. What the command loaded so far (modules,
    classes, pydantic's schemas) lives until it exits: ``gc.freeze`` takes it out of the
    collector's view, so the full collections that a large sweep's objects set off do not walk
    it again and again. Those objects are collected as usual."""
    gc.freeze()
    return module


class Commands:
    """Launch, track and compare T5 fine-tuning sweeps."""

    def __init__(self, started: Started | None = None):
        self._started = started or Started()  # what the command line started early

    def sweep(self, path: str, *overrides: str, dry_run: bool = False, backend: str | None = None,
              retry: str | None = None, force: bool = False, fail_fast: bool = False, allow_dirty: bool = False):
        """Expand a sweep file and run or submit every point that is neither done nor running.

        Args:
            path: the sweep file, e.g. sweeps/lr.yaml.
            overrides: key.path=value settings applied to every point, e.g. train.max_steps=50.
            dry_run: print the points and the exact backend request; submit nothing.
            backend: override the spec's backend (local).
            retry: "failed" resubmits only the points that ended without completing (failed,
                cancelled, timed out, ...); causes, e.g. timeout,node_fail (status shows
                them), only those that failed for one of them.
            force: submit even when the memory planner says a point cannot fit its GPUs.
            fail_fast: stop the sweep after its first failed point (on local, the rest are
                cancelled; on SLURM, the failing job cancels its array).
            allow_dirty: submit with uncommitted changes in workflow/ (the jobs run a snapshot;
                the diff is saved beside it and logged to MLflow).
        """
        sweep = _driver().load(path, overrides, backend, sweep=True)
        return self._launch(sweep, dry_run, retry, force, fail_fast, allow_dirty)

    def run(self, path: str, *overrides: str, dry_run: bool = False, backend: str | None = None,
            force: bool = False, allow_dirty: bool = False):
        """Run one job spec (a sweep of one point named after the file).

        Args:
            path: the job spec, e.g. jobs/demo.yaml.
            overrides: key.path=value settings, e.g. train.learning_rate=1e-3.
            dry_run: print the plan and the backend request; submit nothing.
            backend: override the spec's backend (local).
            force: submit even when the memory planner says it cannot fit its GPUs.
            allow_dirty: submit with uncommitted changes in workflow/ (the diff is recorded).
        """
        return self._launch(_driver().load(path, overrides, backend, sweep=False), dry_run, None, force, False,
                            allow_dirty)

    def _launch(self, sweep, dry_run: bool, retry: str | None, force: bool, fail_fast: bool, allow_dirty: bool):
        driver, ui = _driver(), _ui()
        if dry_run:
            found = driver.dry_run(sweep, retry, fail_fast, allow_dirty, self._started)
            ui.print_plan(found)
            ui.print_memory(found.plan)
            ui.print_warnings(found.plan.warnings)
            return None
        plan = driver.launch_plan(sweep, force, fail_fast, allow_dirty, self._started)
        ui.print_warnings(plan.warnings)
        with ui.sweep_progress(len(sweep.points)) as on_event:
            outcome = driver.launch(plan, retry, on_event, self._started)
        ui.print_outcome(outcome)
        if outcome.failed:
            raise WorkflowError(f"{len(outcome.failed)} point(s) failed; see: python launch.py logs {sweep.name}")
        return None

    def validate(self, path: str, *overrides: str):
        """Validate a job spec or sweep file (and its data and model) without running anything.

        Args:
            path: a job spec (jobs/*.yaml) or a sweep file (sweeps/*.yaml).
            overrides: key.path=value settings, e.g. train.learning_rate=1e-3.
        """
        from workflow.launch.plan import make_plan

        plan = make_plan(_driver().load(path, overrides))
        _ui().console.print(f"[green]ok[/] {path}: {len(plan.sweep.points)} point(s), backend {plan.backend}",
                            highlight=False)
        _ui().print_warnings(plan.warnings)

    def plan(self, path: str, *overrides: str):
        """Per-GPU and host memory of each point for every ZeRO stage and offload choice, and whether
        it fits; a point that does not fit is an error, as it would be for run and sweep.

        Model states use DeepSpeed's cold estimator formulas on the parameter count read from the
        model's config.json (or a flan-t5 preset); activations are estimated per micro batch.

        Args:
            path: a job spec or a sweep file.
            overrides: key.path=value settings, e.g. resources.gpus_per_node=8.
        """
        from workflow.launch.plan import make_plan, refuse_unfit

        plan = make_plan(_driver().load(path, overrides), force=True)
        _ui().print_memory(plan, empty_note=True)
        _ui().print_warnings(plan.warnings)
        refuse_unfit(plan)

    def status(self, sweep: str, all: bool = False):
        """Show each point's state, job id, elapsed time and latest metric.

        Args:
            sweep: the sweep name (python launch.py list shows them).
            all: every point; a sweep of more than 40 shows its count by state and the failed and
                running points.
        """
        ui = _ui()
        manifest, rows, warnings = lifecycle.status(sweep, notify=ui.print_note, show_all=all, started=self._started)
        ui.print_status(manifest, rows, show_all=all)
        ui.print_links(manifest)
        ui.print_warnings(warnings)

    def sync(self, sweep: str):
        """Send metrics and params spooled during an MLflow outage into the same runs, and close
        runs whose job ended without closing them. Status does this too, automatically.

        Args:
            sweep: the sweep name.
        """
        ui = _ui()
        count, warnings = lifecycle.sync(sweep, notify=ui.print_note)
        ui.print_warnings(warnings)
        if warnings:
            raise WorkflowError(f"sync of {sweep} incomplete")
        ui.console.print(f"synced {count} point(s) of {sweep} to MLflow", highlight=False)

    def logs(self, sweep: str, point: str | None = None, tail: int = 40, follow: bool = False):
        """Print the last lines of each point's log.

        Args:
            sweep: the sweep name.
            point: one point, by index, hash prefix or name (default: every point).
            tail: how many lines of each log (0 for all).
            follow: then print the lines the logs gain as they grow, until the points end
                (Ctrl-C stops sooner).
        """
        if not follow:
            _ui().print_logs(lifecycle.logs(sweep, point, int(tail)))
            return
        import threading

        stop = threading.Event()  # Ctrl-C is how a reader stops following: not an error
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            _ui().print_logs(lifecycle.logs(sweep, point, int(tail), follow=True, sleep=stop.wait))
        finally:
            signal.signal(signal.SIGINT, previous)

    def cancel(self, sweep: str, point: str | None = None):
        """Cancel the active points of a sweep (or one point).

        Args:
            sweep: the sweep name.
            point: one point, by index, hash prefix or name (default: every active point).
        """
        _ui().print_cancelled(lifecycle.cancel(sweep, point), sweep)

    def list(self):
        """List the known sweeps."""
        _ui().print_sweeps(lifecycle.sweep_states())

    def compare(self, sweep: str, metric: str | None = None, top: int | None = None, csv: str | None = None,
                plot: bool = False):
        """Compare a sweep's points from MLflow, best first: the params that vary and the metrics.

        Args:
            sweep: the sweep name.
            metric: sort by this metric (default: exact_match, roc_auc, f1_at_k, ... whichever exists).
            top: show only the best N points.
            csv: also write the table to this CSV file.
            plot: also draw the metric against each varying parameter (a PNG in the sweep's folder,
                logged on the sweep's MLflow parent run).
        """
        from workflow.launch.compare import compare, write_csv

        manifest = manifests.load(sweep)
        manifest.adopt_parent()
        rows, params, metrics = compare(manifest, metric, int(top) if top else None)
        ui = _ui()
        ui.console.print(ui.results_table(rows, params, metrics, f"sweep {sweep}: best first by {metrics[0]}"))
        ui.print_links(manifest, points=[row["hash"] for row in rows])
        if csv:
            write_csv(Path(csv), rows, params, metrics)
            ui.console.print(f"wrote {csv}", highlight=False)
        if plot:
            from workflow.launch import compare as comparing, mlflow_client

            path = comparing.plot(rows, params, metrics[0], manifests.sweep_dir(sweep) / f"compare_{metrics[0]}.png")
            try:
                mlflow_client.log_artifact(manifest, path)
            except RuntimeError as exc:
                ui.print_warning(f"{path} not logged to MLflow: {exc}")
            ui.console.print(f"wrote {path} (and on the sweep's MLflow parent run)", highlight=False)

    def ui(self, port: int = 5000, sweep: str | None = None):
        """Serve the MLflow UI of the project's store on 127.0.0.1 (Ctrl-C stops it), and print
        the links of a sweep's runs for its port. A tracking server is its own UI: the links are
        printed and nothing is started.

        Args:
            port: the port on 127.0.0.1.
            sweep: a sweep whose runs, compare and run pages to print.
        """
        from workflow.launch import mlflow_client
        from workflow.paths import resolve_tracking_uri

        if not 0 < int(port) < 65536:
            raise WorkflowError(f"--port must be a port number (1 to 65535), not {port}")
        manifest = manifests.load(sweep) if sweep else None
        if manifest is not None:
            manifest.adopt_parent()
        uri = (manifest.tracking_uri if manifest else None) or resolve_tracking_uri(None)
        ui, (base, served) = _ui(), mlflow_client.ui_base(uri, int(port))
        ui.console.print(f"MLflow UI: {base}", highlight=False, markup=False)
        if manifest is not None:
            ui.print_links(manifest, int(port), serving=True)
        if served is None:
            return
        try:
            command = mlflow_client.ui_command(uri, int(port))
        except RuntimeError as exc:
            raise WorkflowError(str(exc)) from None
        ui.print_note("Ctrl-C stops it")
        if mlflow_client.serve_ui(command):
            raise WorkflowError(f"mlflow ui ended with an error (is port {port} free?)")

    def predict(self, sweep: str | None = None, point: str | None = None, *overrides: str, data: str | None = None,
                out: str | None = None, model: str | None = None, backend: str = "local", shards: int = 1,
                allow_dirty: bool = False):
        """Batch inference of a trained point on new data: each record's samples (best first) with
        their log-probabilities (classifier: scores). Its MLflow run is a child of the point's run.

        Args:
            sweep: the sweep of the trained point (or give --model).
            point: index, hash prefix or name (required when the sweep has several points).
            overrides: decoding settings, e.g. generate.num_beams=4 generate.n_samples=3.
            data: prompt-only records (JSON list, a data file's eval split, or JSON lines); required. A
                file from where the command runs, else under mount/data.
            out: the predictions file (default: <run dir>/predict/<data>-<id>/predictions.json); relative
                to where the command runs, as is --model.
            model: a model folder to use instead of a sweep's point.
            backend: local (this machine), or slurm (an array of --shards tasks, merged by the last).
            shards: SLURM array tasks that split the records.
            allow_dirty: run with uncommitted changes in workflow/.
        """
        from workflow.launch import predict

        point, overrides = lifecycle.point_or_override(sweep, point, overrides)  # a full name, or a setting
        if data is None:
            raise WorkflowError("predict needs --data <file>: the records to predict on")
        job = predict.prepare_predict_job(sweep, point, data, out, model, overrides, allow_dirty)
        ui = _ui()
        if backend == "slurm":
            ids = predict.submit_slurm(job, int(shards))
            ui.console.print(f"submitted {len(ids)} shard(s) of {job.records} records: {', '.join(ids)}; the last "
                             f"to finish writes {job.out} (logs: {job.folder.root / '.submitit'})", highlight=False)
            return None
        with ui.console.status(f"predicting {job.records} records (log: {job.folder.log})"):
            written = predict.run_local(job)
        ui.console.print(f"wrote {job.records} predictions to {written}", highlight=False)

    def evaluate(self, predictions: str, references: str | None = None, metrics: str | None = None, k: int = 1,
                 run: str | None = None, tracking_uri: str | None = None):
        """A task's metrics from a predictions file (training's or predict's), against references.

        Args:
            predictions: the predictions file (from where the command runs, else under mount/data).
            references: a data file with the answers, matched by input text (default: the answers
                the predictions carry).
            metrics: generation metrics: exact_match,rouge_l or "exact_match rouge_l" or
                [exact_match, rouge_l] (by default exact_match, bleu and rouge_l).
            k: K for precision/recall/F1 at K when the references are label lists.
            run: an MLflow run id to log the metrics into.
            tracking_uri: the run's store (default: $MLFLOW_TRACKING_URI, else the project's).
        """
        from workflow.data import given_file
        from workflow.launch.cli_args import items
        from workflow.launch.evaluate import evaluate_file
        from workflow.metrics import GENERATION
        from workflow.paths import resolve_tracking_uri

        names = items(metrics, "--metrics", GENERATION) if metrics is not None else None
        refs = given_file(references, "--references") if references else None
        values = evaluate_file(given_file(predictions, "--predictions"), refs, names, int(k))
        ui = _ui()
        ui.console.print(ui.metrics_table(values, f"{predictions}"))
        if run:
            from workflow.launch import mlflow_client

            try:
                mlflow_client.log_metrics(resolve_tracking_uri(tracking_uri), run, values)
            except RuntimeError as exc:
                raise WorkflowError(f"could not log to MLflow run {run}: {exc}") from None
            ui.console.print(f"logged {len(values)} metric(s) to MLflow run {run}", highlight=False)

    def export(self, sweep: str, point: str | None = None, out: str | None = None):
        """Export a point's model as a standard HF model: merges LoRA adapters (checking the merged
        outputs against the adapter model) or consolidates a ZeRO checkpoint.

        Args:
            sweep: the sweep name.
            point: index, hash prefix or name (required when the sweep has several points).
            out: target folder (default: <run dir>/export), relative to where the command runs.
        """
        from workflow.node.export import export

        record = lifecycle.single_point(manifests.load(sweep), point)
        result = export(record.rundir, Path(out) if out else None)
        diff = "" if result.max_abs_diff is None else f"; max |logit difference| {result.max_abs_diff:.2e}"
        _ui().console.print(f"exported ({result.kind}) {result.source} -> {result.out}{diff}", highlight=False)

    def tiny_model(self, name: str = "tiny-t5", data: str = "demo.json"):
        """Build the offline demo: mount/data/<data> and a tiny T5 in mount/models/<name>.

        When <data> is a data file of your own that holds records (under mount/data, or an
        absolute path), the tiny T5's tokenizer is trained on its text (every prompt and
        completion, or classifier input), so none of it maps to <unk>, and no demo data is
        written in its place: python launch.py tiny_model --name my-t5 --data mine.json.
        An existing model folder is kept as it is.

        Args:
            name: the model folder under mount/models.
            data: the data file under mount/data (written with demo data when absent).
        """
        from workflow.launch import setup_demo

        model_dir, data_path = setup_demo.build(name, data)
        _ui().console.print(f"data: {data_path}\nmodel: {model_dir}", highlight=False)

    def schema(self, markdown: bool = False):
        """Print every job spec key with its default and meaning.

        Args:
            markdown: print the README's reference table instead.
        """
        from workflow.spec import field_paths, reference_markdown

        if markdown:
            print(reference_markdown())
            return
        import textwrap

        for path, info in field_paths().items():
            default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
            print(textwrap.fill(f"{path}: {default}  # {info.description or ''}", 80, subsequent_indent="    # ",
                                break_long_words=False, break_on_hyphens=False))


def explicit_bool_flags(argv: list[str]) -> list[str]:
    """fire reads the word after a bare flag as the flag's value: `run job.yaml --dry_run
    train.seed=2` set dry_run to 'train.seed=2' and dropped the override. Boolean flags of the
    command take no value, so write them as `--flag=True`."""
    method = getattr(Commands, argv[0], None) if argv else None
    if not callable(method):
        return argv
    params = inspect.signature(method).parameters
    bools = {name for name, p in params.items() if isinstance(p.default, bool)}
    out = []
    for token in argv:
        name = None
        if token.startswith("--") and "=" not in token:
            name = token[2:].replace("-", "_")
        elif len(token) == 2 and token[0] == "-" and token[1].isalpha():  # fire's one-letter abbreviations
            starting = [n for n in params if n.startswith(token[1])]
            name = starting[0] if len(starting) == 1 else None
        out.append(f"--{name}=True" if name in bools else token)
    return out


def check_command(argv: list[str]) -> None:
    """`launch.py swep ...`: fire would list every command; name the one meant."""
    if not argv or argv[0].startswith("-") or callable(getattr(Commands, argv[0], None)):
        return
    from workflow.errors import Problem, suggest

    known = [n for n in vars(Commands) if not n.startswith("_")]
    raise WorkflowError(f"No command '{argv[0]}'", [Problem(
        "<command line>", None, "a command: " + ", ".join(known), repr(argv[0]), suggest(argv[0], known))])


def checked(argv: list[str]) -> list[str]:
    """fire's command line for ``argv``, once the command and every argument it was given are
    known to be the command's (fire would run the command first and complain after)."""
    check_command(argv)
    if not argv or argv[0].startswith("-"):
        return argv
    from workflow.launch import cli_args

    shown = cli_args.help_request(argv)
    if shown:
        return shown
    cli_args.check(argv[0], inspect.signature(getattr(Commands, argv[0])), argv[1:])
    return explicit_bool_flags(argv)


def stop_on_sigterm(signum, frame):
    """SIGTERM (a login node's clean-up, `timeout`, `kill`) stops the launcher as Ctrl-C does:
    running local points are stopped and the manifest and MLflow runs end in a true state."""
    raise KeyboardInterrupt(f"signal {signum}")


def help_text(argv: list[str]) -> str | None:
    """fire's help for ``launch.py [--help]`` and ``launch.py CMD ... --help``, at 80 columns
    (fire prints each paragraph on one line)."""
    import shutil

    from fire import helptext, trace
    from workflow.launch import cli_args

    commands = Commands()
    if argv and argv[0] not in cli_args.HELP:
        if argv[1:2] != [cli_args.SEPARATOR] or argv[2:] != ["--help"]:
            return None
        found = trace.FireTrace(commands, name="launch.py")
        found.AddAccessedProperty(getattr(commands, argv[0]), argv[0], [argv[0]], None, None)
        text = helptext.HelpText(getattr(commands, argv[0]), trace=found)
    else:
        text = helptext.HelpText(commands, trace=trace.FireTrace(commands, name="launch.py"))
    return cli_args.wrapped(text, min(80, shutil.get_terminal_size().columns))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        command = checked(argv)
        shown = help_text(command) if not command or command[0] in ("--help", "-h") or "--help" in command else None
    except WorkflowError as exc:
        _ui().print_error(exc)
        return 1
    if shown:
        print(shown)
        return 0
    with start_early(command) as started:
        return _run(command, started)


def _run(argv: list[str], started: Started) -> int:
    import fire  # while the programs started early run

    try:
        fire.Fire(Commands(started), command=argv, name="launch.py")
    except WorkflowError as exc:
        _ui().print_error(exc)
        return 1
    except KeyboardInterrupt:
        _ui().print_warning("stopped; running points were cancelled")
        return 130
    except fire.core.FireExit as exc:
        return int(exc.code or 0)
    except BrokenPipeError:  # `launch.py schema | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
