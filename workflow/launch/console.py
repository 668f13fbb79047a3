"""All terminal UI (rich) lives here; the rest of the library returns values."""

from __future__ import annotations

import re
import time
from pathlib import Path
from datetime import timedelta
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from rich.cells import cell_len
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from workflow.errors import WorkflowError
from workflow.launch.lifecycle import SHOWN_ROWS
from workflow.launch.manifest import Manifest, PointRecord
from workflow.launch.memory import PROCESS_HOST_GB, fits, host_fits
from workflow.launch.memory_advice import gpu_hint
from workflow.launch.table_fit import Column, elide_name, fitted_table, name_eliders, shorten_text, table_width, wrap_settings
from workflow.states import State
from workflow.tree import format_value

if TYPE_CHECKING:  # annotations only: status never loads the spec machinery
    from workflow.launch.sweep import Sweep

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

STATE_STYLE = {State.COMPLETED: "green", State.RUNNING: "cyan", State.PENDING: "yellow", State.FAILED: "red",
               State.CANCELLED: "magenta", State.TIMEOUT: "red", State.OUT_OF_MEMORY: "red", State.NODE_FAIL: "red",
               State.PREEMPTED: "yellow", State.PLANNED: "dim"}


def print_error(exc: WorkflowError) -> None:
    err_console.print(f"[bold red]error:[/] {exc.headline}", highlight=False)
    for problem in exc.problems:
        err_console.print(f"  [red]-[/] {problem.render()}", highlight=False, soft_wrap=True)


def print_warning(text: str) -> None:
    err_console.print(f"[yellow]warning:[/] {text}", highlight=False)


def print_note(text: str) -> None:
    """Progress that a command is busy with (stderr: the output stays what it was)."""
    err_console.print(text, style="dim", highlight=False, markup=False)


def print_warnings(texts: list[str]) -> None:
    for text in texts:
        print_warning(text)


def print_outcome(outcome) -> None:
    """After a launch: what was skipped; then the status of submitted points (cluster backends),
    or the results table and where to see the runs (the local backend has run them)."""
    manifest, name = outcome.manifest, outcome.manifest.sweep
    print_warnings(outcome.warnings)
    if outcome.skipped:
        console.print(f"skipped {len(outcome.skipped)} point(s) already done or active", highlight=False)
    if not outcome.waited:
        from workflow.launch.lifecycle import shown_points, status_rows

        print_status(manifest, status_rows(manifest, shown_points(manifest)))
        console.print(f"submitted {len(outcome.submitted)} point(s). Follow them with: python launch.py status "
                      f"{name}  |  logs {name}  |  cancel {name}", highlight=False)
        print_links(manifest)
        return
    from workflow.launch.lifecycle import results

    rows, params, metrics = results(manifest, outcome.plan.sweep.varying)
    console.print(results_table(rows, params, metrics, f"sweep {name}: results, best first"))
    console.print(f"runs: {manifest.path.parent}", highlight=False)
    print_links(manifest)


SHOWN_RUN_LINKS = 5  # a larger sweep's point runs are rows of its runs link


def print_links(manifest: Manifest, port: int | None = None, serving: bool = False,
                points: list[str] | None = None) -> None:
    """The MLflow UI command and the sweep's runs and compare pages (and its points' run pages,
    when a few); ``port``: where ``launch.py ui`` serves a local store (``serving``: it does);
    ``points``: the hashes of the points whose run pages to list, in order (default: all)."""
    from workflow.launch.mlflow_client import ui_links

    links = ui_links(manifest, port)
    if links is None:
        if manifest.tracking_uri:
            console.print(f"MLflow: the sweep's parent run is being registered; `python launch.py status "
                          f"{manifest.sweep}` prints its links.", highlight=False, markup=False, soft_wrap=True)
        return
    command = links.command and not serving
    lines = ([f"MLflow UI: {links.command}"] if command else []) + [f"  runs:    {links.runs}"]
    lines += [f"  compare: {links.compare}"] if links.compare else []
    shown = [h for h in (links.points if points is None else points) if h in links.points]
    if len(shown) <= SHOWN_RUN_LINKS:
        lines += [f"  {manifest.points[h].index} {manifest.points[h].name}: {links.points[h]}" for h in shown]
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)


def print_logs(found) -> None:
    """Lines of points' logs, each point's under a rule naming it (``logs --follow``: again
    when the lines of another point came between)."""
    shown = None
    for record, lines in found:
        if record.hash != shown:
            console.rule(f"{record.index} {escape(record.name)} \\[{record.state}]")
            shown = record.hash
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def print_sweeps(states: dict[str, dict[str, int]]) -> None:
    for name, counts in states.items():
        console.print(f"{name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)


SHOWN_REQUEST_LINES = 200  # sbatch scripts stay whole; a local request of 1,000 commands does not


def _shown(items: list, limit: int = SHOWN_ROWS) -> tuple[list, int]:
    if len(items) <= limit:
        return items, 0
    return items[:limit - 5] + items[-5:], len(items) - limit


def print_cancelled(names: list[str], sweep: str) -> None:
    """What cancel did: the points by name, a few of them when there are many."""
    if len(names) <= SHOWN_ROWS:
        console.print(f"cancelled {len(names)} point(s)" + (": " + ", ".join(names) if names else ""),
                      highlight=False, markup=False)
        return
    console.print(f"cancelled {len(names)} point(s): {', '.join(names[:10])}, ... ({len(names) - 10} more; "
                  f"python launch.py status {sweep} --all lists them)", highlight=False, markup=False)


def points_table(sweep: Sweep, title: str | None = None, width: int | None = None) -> Table:
    """The points at ``width`` (default: the terminal's); a column per varying key while the
    whole names fit beside them (the names say what each point sets, so the columns are the first
    thing to go), then names on several lines, broken after a comma only: a dry run shows every
    setting of every point."""
    points, hidden = _shown(sweep.points)
    rows = [[str(p.index), p.name, p.hash[:8], *(format_value(p.overrides[k]) for k in sweep.varying)] for p in points]
    if hidden:
        rows.insert(SHOWN_ROWS - 5, ["...", f"({hidden} more points)", "", *([""] * len(sweep.varying))])
    names = [row[1] for row in rows]
    columns = [Column("#", [row[0] for row in rows], justify="right"),
               Column("point", names, shorten=wrap_settings, min_width=18),
               Column("hash", [row[2] for row in rows])]
    keys = [Column(key, [row[3 + i] for row in rows]) for i, key in enumerate(sweep.varying)]
    width = width or console.width
    if table_width([c.natural for c in columns + keys]) <= width:
        columns += keys
    return fitted_table(columns, width, title or f"sweep {sweep.name}: {len(sweep.points)} point(s)")


def print_plan(found) -> None:
    """A dry run: the points, the data, and the exact backend request."""
    plan, skipped = found.plan, found.skipped
    sweep, backend, data_counts = plan.sweep, plan.backend, plan.data_counts
    request_text = found.request.describe() if found.request else "(nothing to submit)"
    lines, hidden = _shown(request_text.splitlines(), SHOWN_REQUEST_LINES)
    if hidden:
        lines.insert(SHOWN_REQUEST_LINES - 5, f"# ... {hidden} more lines of the same form")
        request_text = "\n".join(lines)
    console.print(points_table(sweep))
    first = sweep.points[0].spec if sweep.points else None
    if first is not None and first.search is not None:
        from workflow.launch import search

        for line in search.describe(first.search.model_dump(), len(sweep.points), first.local.max_parallel,
                                    first.train.max_steps):
            console.print(line, highlight=False, markup=False)
    for name, counts in data_counts.items():
        console.print(f"data {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)
    if skipped:
        console.print(f"{len(skipped)} point(s) already done or active would be skipped", highlight=False)
    console.print(f"[bold]backend request ({backend}):[/]")
    console.print(request_text, highlight=False, markup=False, soft_wrap=True)
    console.print("[dim]dry run: nothing submitted[/]")


def print_memory(plan, empty_note: bool = False) -> None:
    """One table per distinct memory estimate in the plan, after what deepspeed.stage auto chose,
    and what to change where the chosen setup does not fit."""
    if empty_note and not plan.memory:
        console.print("no GPU points with a known T5 config: nothing to plan", highlight=False)
    for reason in dict.fromkeys(plan.auto_choices.values()):
        console.print(reason, highlight=False)
    seen = set()
    for point in plan.sweep.points:
        est = plan.memory.get(point.hash)
        if est is None or repr(est) in seen:
            continue
        seen.add(repr(est))
        console.print(memory_table(est, point.name, point.spec.backend))
        if est.gpu_fits is False:
            console.print(f"[red]does not fit[/] {est.gpu_mem_gb:.0f} GiB GPUs; {escape(gpu_hint(point.spec, est))}",
                          highlight=False)
        if est.host_fits is False:
            console.print(f"[red]does not fit[/] {est.host_mem_gb:g} GiB of host memory a node (resources.mem_gb): "
                          f"{est.chosen.label} needs {est.chosen.host_gb:.1f} GiB", highlight=False)


def memory_table(est, name: str, backend: str) -> Group:
    """Fits 80 columns: short headers, the setup in a few words, the shared facts above and below."""
    gpus = est.gpus_per_node * est.chosen.nodes
    title = (f"[bold]{escape(name)}[/]: {est.model}, {est.params.total / 1e9:.1f}B params, {est.chosen.nodes}x"
             f"{est.gpus_per_node} GPUs" + (f" of {est.gpu_mem_gb:.0f} GiB" if est.gpu_mem_gb else ""))
    table = Table()
    for column in ("setup", "states", "activ.", "total", "host", "fits"):
        table.add_column(column, justify="left" if column == "setup" else "right")
    rows = list(est.options)
    if est.chosen not in rows:
        rows.insert(0, est.chosen)
    for option in rows:
        label = option.short + (f" x{option.nodes} nodes" if option.nodes != est.chosen.nodes else "")
        label += " (chosen)" if option == est.chosen else ""
        table.add_row(label, f"{option.gpu_gb:.1f}", f"{est.activations_gb:.1f}",
                      f"{option.total_gb:.1f}", f"{option.host_gb:.1f}", fit_cell(option, est))
    limit = (f"resources.mem_gb {est.host_mem_gb:g}" if est.host_mem_gb is not None else
             f"unchecked: resources.mem_gb is unset, and the {backend} backend requests none")
    notes = (f"[dim]GiB per GPU; host: per node, {PROCESS_HOST_GB:g} a process included ({limit}). {gpus} GPUs in "
             "all. states: model states from DeepSpeed's cold estimator formulas; activ.: activations; "
             "+opt/+par: optimizer/params offloaded to CPU[/]")
    return Group(Text.from_markup(title), table, Text.from_markup(notes))


def fit_cell(option, est) -> str:
    """no with what is too small; yes when it fits the GPUs (the notes say whether the host memory
    was checked); - when the GPU size is unknown."""
    short = [what for what, size, check in (("GPU", est.gpu_mem_gb, fits), ("host", est.host_mem_gb, host_fits))
             if size is not None and not check(option, size)]
    if short:
        return f"[red]no[/] ({short[0] if len(short) == 1 else 'both'})"
    return "-" if est.gpu_mem_gb is None else "yes"


@contextmanager
def sweep_progress(total: int) -> Iterator:
    """A progress bar over a sweep's points, with the running points' step, loss and ETA (read
    from their spools at each refresh); yields the backend event hook."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

    running = RunningColumn()

    class Running(ProgressColumn):  # rich.progress loads with the bar: status and the rest never need it
        def render(self, task) -> Text:
            return running.render(task)

    progress = Progress(TextColumn("points", style="bold", markup=False), BarColumn(bar_width=20), MofNCompleteColumn(),
                        TimeElapsedColumn(), Running(), console=console, transient=False)
    task = progress.add_task("points", total=total)

    def on_event(kind: str, record: PointRecord) -> None:
        if kind == "started":
            running.records[record.hash] = record
        elif kind == "finished":
            running.records.pop(record.hash, None)
            progress.console.print(finished_line(record, progress.console.width), highlight=False,
                                   soft_wrap=True)
            progress.advance(task)
        elif kind == "submitted":
            progress.advance(task)

    with progress:
        yield on_event


def finished_line(record: PointRecord, width: int) -> Text:
    """`COMPLETED <point>  <run dir>` in ``width``: the name elided to fit beside the state; the
    run folder (a path to copy, never cut) on the next line when the line would be wider."""
    head = Text(f"{record.state} ", style=_style(record.state)).append(
        elide_name(record.name, width - cell_len(f"{record.state} ")), style="default")
    sep = "  " if cell_len(f"{head.plain}  {record.run_dir}") <= width else "\n  "
    return head.append(sep + record.run_dir, style="default")


class RunningColumn:
    """What the progress bar's last column shows: `step 120/300 loss=3.21 ETA 0:00:42 <point>`
    for each running point. The rate is measured from the first step seen, so model loading
    does not count in the ETA."""

    def __init__(self):
        self.records: dict[str, PointRecord] = {}
        self.first: dict[str, tuple[int, float]] = {}
        self.max_steps: dict[str, int | None] = {}

    def render(self, task) -> Text:
        from workflow.launch.lifecycle import latest_metric

        parts = []
        for digest, record in list(self.records.items()):
            step, metric = latest_metric(record.rundir)
            if digest not in self.max_steps:
                self.max_steps[digest] = record.rundir.read_job().get("spec", {}).get("train", {}).get("max_steps")
            text = "starting"
            if step is not None:
                total = self.max_steps[digest]
                text = f"step {step}" + (f"/{total}" if total else "") + f" {metric}"
                first = self.first.setdefault(digest, (step, time.time()))
                if total and step > first[0]:
                    rate = (step - first[0]) / (time.time() - first[1])
                    text += f" ETA {_elapsed((total - step) / rate)}"
            parts.append(f"{text} {elide_name(record.name, 32)}")
        return Text("  ".join(parts), overflow="ellipsis", no_wrap=True)


def results_table(rows: list[dict], params: list[str], metrics: list[str], title: str,
                  width: int | None = None) -> Table:
    """Best first. A param column is left out when every point's name already says its value
    (a grid's `learning_rate=1e-3`); at a narrow ``width`` (default: the terminal's) the last
    params go, then the last metrics (the ranking one stays), and point names are elided."""
    params = [p for p in params if not all(
        f"{p.rsplit('.', 1)[-1]}={format_value(_number(row['params'].get(p, '')))}" in row["point"] for row in rows)]
    columns = [Column("point", names := [row["point"] for row in rows], shorten=name_eliders(names), min_width=20),
               Column("state", [str(row["state"]) for row in rows], [_style(row["state"]) for row in rows])]
    columns += [Column(p.rsplit(".", 1)[-1], [format_value(_number(row["params"].get(p, ""))) for row in rows],
                       drop=100 + i) for i, p in enumerate(params)]
    columns += [Column(m, [_metric(row["metrics"].get(m)) for row in rows], justify="right", drop=i)
                for i, m in enumerate(metrics)]
    return fitted_table(columns, width or console.width, title)


def metrics_table(values: dict, title: str, width: int | None = None) -> Table:
    columns = [Column("metric", list(values), shorten=elide_name),
               Column("value", [_metric(v) for v in values.values()], justify="right")]
    return fitted_table(columns, width or console.width, title)


def print_status(manifest: Manifest, rows: list[dict], show_all: bool = False) -> None:
    """The status table of ``rows`` (``lifecycle.shown_points``): every point of a small sweep (or
    with ``show_all``); for a large one, the count of points by state, then the failed and
    running points (at most SHOWN_ROWS of them)."""
    if show_all or len(manifest.points) <= SHOWN_ROWS:
        console.print(status_table(manifest, rows))
        if show_all:
            print_causes(manifest)
        return
    summary = ", ".join(f"[{STATE_STYLE.get(k, 'white')}]{k}[/] {v}" for k, v in manifest.state_counts().items())
    console.print(f"sweep {escape(manifest.sweep)} ({manifest.sweep_id}): {len(manifest.points)} points: {summary}")
    print_causes(manifest)
    if rows:
        console.print(status_table(manifest, rows[:SHOWN_ROWS], title="failed and running points"))
    more = len(rows) - SHOWN_ROWS
    console.print(f"{f'{more} more not shown; ' if more > 0 else ''}every point: "
                  f"python launch.py status {manifest.sweep} --all", highlight=False)


def status_table(manifest: Manifest, rows: list[dict], title: str | None = None,
                 width: int | None = None) -> Table:
    """One line a point at ``width`` (default: the terminal's): names elided in the middle, the
    error cut at a word in the width left; when narrow, step, elapsed time, job id and then the
    latest metric go first."""
    columns = [Column("#", [str(row["index"]) for row in rows], justify="right"),
               Column("point", names := [row["name"] for row in rows], shorten=name_eliders(names), min_width=18),
               Column("state", [str(row["state"]) for row in rows], [_style(row["state"]) for row in rows]),
               Column("job id", [row["job_id"] or "-" for row in rows], drop=2),
               Column("elapsed", [_elapsed(row["elapsed_s"]) for row in rows], drop=3),
               Column("step", [str(row.get("step") or "-") for row in rows], drop=4),
               Column("latest metric", [row.get("metric") or "-" for row in rows], drop=1)]
    if any(row.get("attempt", 1) > 1 for row in rows):
        columns.insert(3, Column("try", [str(row.get("attempt", 1)) for row in rows], justify="right", drop=1))
    if any(row.get("cause") for row in rows):
        columns.append(Column("cause", [row.get("cause") or "" for row in rows]))
    if any(row.get("error") for row in rows):
        columns.append(Column("error", [_error_cell(row) for row in rows], shorten=shorten_text, min_width=20))
    return fitted_table(columns, width or console.width, title or f"sweep {manifest.sweep} ({manifest.sweep_id})")


def _error_cell(row: dict) -> str:
    """The error, after where it was raised (``hf.py:212``: the file's name, the line)."""
    where = row.get("where") and Path(row["where"]).name
    return f"{where} {row.get('error') or ''}"[:200] if where else (row.get("error") or "")[:200]


def print_causes(manifest: Manifest) -> None:
    """The failed points by cause, most first: what to fix, and how many it costs."""
    counts = manifest.cause_counts()
    if counts:
        console.print("failed by cause: " + ", ".join(f"{cause} {n}" for cause, n in counts.items()), highlight=False)


def _style(state) -> str:
    return STATE_STYLE.get(state, "white")


def _number(value):
    """MLflow keeps params as text ("0.003"): read floats back, so they print as the point names
    do (3e-3)."""
    if isinstance(value, str) and re.fullmatch(r"-?(\d+\.\d*|\.\d+|\d+(\.\d*)?e-?\d+)", value):
        return float(value)
    return value


def _metric(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _elapsed(seconds) -> str:
    """H:MM:SS, with days beyond 24 hours (1 day, 1:00:00), never wrapping."""
    if seconds is None:
        return "-"
    return str(timedelta(seconds=int(seconds)))
