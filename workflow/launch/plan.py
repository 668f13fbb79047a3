"""The plan: a value that says exactly what a sweep will do, built before anything is touched.

``--dry_run`` prints a plan; ``submit`` consumes the same plan. Building one checks every
point's model source and data file, so bad input fails here, with nothing written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from workflow import data, secrets
from workflow.errors import DataError, Problem, SpecError, suggest
from workflow.launch import coverage, hub, memory
from workflow.launch import memory_advice as advice
from workflow.launch.manifest import sweep_dir
from workflow.launch.early import Started
from workflow.launch.snapshot import Snapshot
from workflow.launch.sweep import Point, Sweep
from workflow.paths import data_dir, is_local_path, models_dir, resolve_tracking_uri
from workflow.rundir import RunDir
from workflow.spec import JobSpec


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    backend: str
    tracking_uri: str
    experiment: str
    data_counts: dict
    memory: dict = field(default_factory=dict)  # point hash -> memory.Estimate (GPU jobs with a known T5)
    fail_fast: bool = False  # stop the sweep after its first failed point
    auto_choices: dict = field(default_factory=dict)  # point hash -> what deepspeed.stage auto chose, in words
    code: Snapshot | None = None  # the code the nodes run (None: this checkout, as it is)
    warnings: tuple[str, ...] = ()  # what may fail on the nodes but cannot be known here

    @cached_property
    def root(self) -> Path:
        """The sweep's folder, found once: a plan's folders do not move while it is submitted."""
        return sweep_dir(self.sweep.name)

    def run_path(self, point: Point) -> str:
        """A point's run folder, as text (the backend and the manifest each ask: found once)."""
        found = self._run_paths.get(point.hash)
        if found is None:  # a slug has no separator, and is never . or ..
            found = self._run_paths[point.hash] = os.path.join(self.root, point.slug)
        return found

    def run_dir(self, point: Point) -> RunDir:
        return RunDir(Path(self.run_path(point)))

    @cached_property
    def _run_paths(self) -> dict[str, str]:
        return {}


def check_model(spec: JobSpec, file: str) -> Problem | None:
    """The model source: a folder under mount/models, a local folder (``is_local_path``), or a
    hub id, which an offline machine (HF_HUB_OFFLINE=1) must hold in its hub cache."""
    source = spec.model_source
    if spec.model_init_name:
        if not (Path(source) / "config.json").is_file():
            available = sorted(p.name for p in models_dir().glob("*") if (p / "config.json").is_file())
            return Problem(file, "model_init_name", f"a model folder under {models_dir()}",
                           repr(spec.model_init_name),
                           "available: " + (", ".join(available) or "none (run: python launch.py tiny_model)"))
        return None
    if is_local_path(spec.model_init_path):
        if not (Path(source) / "config.json").is_file():
            where = None if os.path.isabs(source) else f"relative to {os.getcwd()}, where the command runs"
            return Problem(file, "model_init_path", "a folder with config.json, or a hub id", repr(source), where)
        return None
    if not hub.HUB_ID.match(source):
        return Problem(file, "model_init_path", "a local path or a hub id such as google/flan-t5-xxl", repr(source))
    if hub.offline() and not hub.cached(source):
        return Problem(file, "model_init_path", f"a local folder, or a hub id in the hub cache ({hub.cache_dir()}): "
                       "HF_HUB_OFFLINE=1 downloads nothing, here or on the nodes", f"{source!r} (not cached)",
                       f"prefetch it where the nodes read it: HF_HOME=<shared dir> {hub.download_command(source)}; "
                       f"or download it to a local folder, {hub.download_command(source, local=True)}, "
                       f"and set model_init_path: ./{source} (relative to {os.getcwd()})")
    return None


def hub_warning(spec: JobSpec) -> str | None:
    """A hub id (google/flan-t5-xxl) that is neither in this machine's model cache nor reachable
    from here: the nodes may not reach the hub either. (Offline, ``check_model`` refuses it.)"""
    source = spec.model_source
    if spec.model_init_name or is_local_path(source) or not hub.HUB_ID.match(source) or hub.cached(source):
        return None
    if hub.offline() or hub.reachable(source):
        return None
    return (f"model {source} is not in the model cache here ({hub.cache_dir()}) and the hub is unreachable: "
            f"the nodes need it prefetched into the HF_HOME they use, e.g. HF_HOME=<shared dir> "
            f"{hub.download_command(source)}, or set model_init_path to a local folder "
            f"({hub.download_command(source, local=True)})")


def t5_modules(cfg: dict) -> set[str]:
    """Names of T5's adaptable modules, from its config alone."""
    gated = str(cfg.get("feed_forward_proj", "relu")).startswith("gated")
    return {"q", "k", "v", "o", "wo", "lm_head", "shared", "embed_tokens"} | ({"wi_0", "wi_1"} if gated else {"wi"})


def check_lora(spec: JobSpec, file: str) -> Problem | None:
    cfg = memory.t5_config(spec.model_source) if spec.lora else None
    if cfg is None:
        return None
    modules = t5_modules(cfg)
    unknown = [m for m in spec.lora.target_modules if m not in modules]
    if not unknown:
        return None
    return Problem(file, "lora.target_modules", "module names of this model: " + ", ".join(sorted(modules)),
                   ", ".join(repr(m) for m in unknown) + " (not in the model)")


def check_memory(plan_memory: dict, sweep: Sweep) -> list[Problem]:
    """Each point above its GPU memory or its node's host memory (``resources.mem_gb``), once."""
    problems = []
    for point in sweep.points:
        est = plan_memory.get(point.hash)
        if est is None:
            continue
        found = [advice.gpu_problem(sweep.file, point.spec, est)] if est.gpu_fits is False else []
        found += [advice.host_problem(sweep.file, point.spec, est)] if est.host_fits is False else []
        problems += [p for p in found if p not in problems]
    return problems


def refuse_unfit(plan: Plan) -> None:
    """The plan command shows every estimate, then refuses a point that does not fit, as a launch would."""
    problems = check_memory(plan.memory, plan.sweep)
    if problems:
        raise SpecError(f"{plan.sweep.file} does not fit its GPUs or host memory", problems)


def make_plan(sweep: Sweep, force: bool = False, fail_fast: bool = False, cluster: Started | None = None) -> Plan:
    """Check every point's model, LoRA targets, data and memory, and (``cluster``: where the
    command asks its cluster) what the backend can run, and pin the tracking store. Every
    problem found is raised at once, in one SpecError. ``force`` submits configurations the
    memory planner says cannot fit."""
    problems: list[Problem] = []
    backends = {p.spec.backend for p in sweep.points}
    if len(backends) > 1:
        problems.append(Problem(sweep.file, "backend", "one backend for the whole sweep", ", ".join(sorted(backends))))
    checked = set()
    for point in sweep.points:  # once per distinct model and LoRA setup
        spec = point.spec
        key = (spec.model_init_name, spec.model_init_path, repr(spec.lora))
        if key in checked:
            continue
        checked.add(key)
        for problem in (check_model(spec, sweep.file), check_lora(spec, sweep.file)):
            if problem and problem not in problems:
                problems.append(problem)
    for point in sweep.points:
        allowed = point.spec.generate.allowed_outputs
        if isinstance(allowed, str):
            try:
                data.load_labels(allowed)
            except DataError as exc:
                problems += [Problem(sweep.file, "generate.allowed_outputs", p.expected, p.given, str(p.file))
                             for p in exc.problems if p not in problems]
    for key, reason in secrets.find_in_spec(sweep.points[0].spec.model_dump(mode="json")):
        problems.append(Problem(sweep.file, key, "no credentials in a spec: jobs inherit them from the environment "
                                "(e.g. MLFLOW_TRACKING_PASSWORD, HF_TOKEN)", reason + " (hidden)"))
    counts = check_data(sweep, problems)
    choices = resolve_auto_stages(sweep, problems)
    estimates = {p.hash: memory.estimate(p.spec) for p in sweep.points}
    estimates = {h: e for h, e in estimates.items() if e is not None}
    if not force:
        problems += [p for p in check_memory(estimates, sweep) if p not in problems]
    if len(backends) == 1:
        from workflow.launch import backends as registry

        backend = registry.get(next(iter(backends)), cluster)
        problems += [p for p in backend.rules(sweep) if p not in problems]
        if cluster:
            problems += [p for p in backend.problems(sweep.file, sweep.points) if p not in problems]
    covered = coverage.check_sweep(sweep, problems)
    if problems:
        raise SpecError(f"Cannot run {sweep.file}" if cluster else f"Cannot plan {sweep.file}", problems)
    first = sweep.points[0].spec
    uri = resolve_tracking_uri(first.tracking.uri)
    distinct = {(p.spec.model_init_name, p.spec.model_init_path): p.spec for p in sweep.points}
    sources = {spec.model_source: spec for spec in distinct.values()}
    warnings = tuple(w for w in map(hub_warning, sources.values()) if w) + covered
    return Plan(sweep, backends.pop(), uri, first.tracking.experiment,
                {key[1]: c for key, c in counts.items()}, estimates, fail_fast, choices, warnings=warnings)


def check_data(sweep: Sweep, problems: list[Problem]) -> dict:
    """Each distinct data file of the sweep, checked once: {key: record count per split}."""
    counts: dict = {}
    for point in sweep.points:
        spec = point.spec
        key = (spec.task, spec.data_name, spec.train.do_train, tuple(spec.classifier.labels or ()) or None)
        if key in counts:
            continue
        counts[key] = {}
        if data.jsonl_files(spec.data_name) is None and not data.data_path(spec.data_name).is_file():
            known = sorted(p.name for p in data_dir().glob("*.json*")) if data_dir().is_dir() else []
            problems.append(Problem(sweep.file, "data_name", f"a JSON file under {data_dir()}",
                                    f"{spec.data_name!r} (no such file)",
                                    suggest(spec.data_name, known) if known else f"{data_dir()} is empty"))
            continue
        try:
            counts[key] = data.check(*key)
        except DataError as exc:
            problems += [p for p in exc.problems if p not in problems]
    return counts


def resolve_auto_stages(sweep: Sweep, problems: list[Problem]) -> dict[str, str]:
    """Replace ``deepspeed.stage: auto`` in each point's spec by the planner's choice, so the
    dry run, the run directory and the node all see the concrete setup. The point hash stays
    that of the declared spec. Returns {point hash: the choice in words}."""
    choices = {}
    for point in sweep.points:
        ds, res = point.spec.deepspeed, point.spec.resources
        if not (ds.enabled and ds.stage == "auto"):
            continue
        found = memory.auto_stage(point.spec)
        if found is None:
            problem = Problem(sweep.file, "deepspeed.stage", "a GPU size (resources.gpu_type or resources.gpu_mem_gb) "
                              "and a T5 config.json or flan-t5 preset, to plan stage auto",
                              f"gpu_type={res.gpu_type!r}, gpu_mem_gb={res.gpu_mem_gb!r}",
                              f"known GPU types: {', '.join(memory.GPU_MEMORY_GB)}")
            if problem not in problems:
                problems.append(problem)
            continue
        choice, reason = found
        point.spec.deepspeed = ds.model_copy(update=choice)
        choices[point.hash] = reason
    return choices
