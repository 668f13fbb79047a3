"""Sweep expansion: a pure function from a sweep file to a list of resolved points.

A sweep file names a ``base`` job spec and any of ``grid``, ``zip``, ``random``, ``points``.
Each block is one axis; the points are the cartesian product of the axes present:

- ``grid``: every key is its own axis (cartesian product of the lists);
- ``zip``: one axis whose values are paired across keys (lists of equal length);
- ``random``: one axis of ``n`` samples drawn with ``seed``;
- ``points``: one axis of explicit override mappings.
"""

from __future__ import annotations

import itertools
import math
import random as _random
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from workflow.errors import Problem, SpecError, short, suggest
from workflow.launch import config
from workflow.launch.search import SearchBlock
from workflow.launch.sweep_blocks import BaseBlocks
from workflow.spec import JobSpec, field_paths
from workflow.spec_errors import problems_from
from workflow.tree import deep_merge, format_value, nest

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
TRIAL_RETRY = ("node_fail", "nccl", "preempted", "timeout")  # a search trial's retry block unless its spec has one
ASKED = "(asked at start)"  # a search trial's value of a searched key before its job has asked the study


class RandomBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: PositiveInt = Field(..., description="Number of samples.")
    seed: int = Field(0, description="Sampling seed; the same seed gives the same points.")
    params: dict[str, dict[str, list]] = Field(
        ..., min_length=1, description="key.path: {choice|uniform|loguniform|int: [values or low, high]}")


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str = Field(..., description="The job spec every point starts from.")
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                description="Sweep name (default: the file name).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="key.path: value set on every point.")
    grid: dict[str, list] = Field(default_factory=dict, description="key.path: [values], cartesian product.")
    zip: dict[str, list] = Field(default_factory=dict, description="key.path: [values], paired by position.")
    random: Optional[RandomBlock] = None
    points: list[dict[str, Any]] = Field(default_factory=list, description="Explicit list of override mappings.")
    search: Optional[SearchBlock] = Field(None, description="An adaptive search (Optuna): trials that ask for their "
                                          "parameters when they start; instead of grid/zip/random/points.")
    max_points: PositiveInt = Field(1000, description="Refuse to submit a sweep larger than this.")


@dataclass(frozen=True)
class Point:
    index: int
    name: str
    hash: str
    overrides: dict
    spec: JobSpec = field(repr=False)

    @cached_property  # a sweep's submission asks for it several times per point
    def slug(self) -> str:
        text = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.name)[:60].strip("_")
        return f"{text or 'point'}-{self.hash[:8]}"


@dataclass(frozen=True)
class Sweep:
    name: str
    file: str
    points: list[Point]
    varying: list[str]
    added: tuple[str, ...] = ()  # the command line's key=value overrides; names a point they make anew


def load_sweep_file(path: Path) -> SweepFile:
    raw = config.read_yaml(path)
    try:
        return SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"Invalid sweep file {path}", problems_from(exc, str(path), SweepFile, "sweep key")) from None


def _key_checker(file: str, problems: list[Problem]):
    """``check(key, shown)``: whether ``key`` is a spec key path; a problem (shown as ``shown``,
    with a suggestion) goes to ``problems`` when it is not."""
    known = field_paths()

    def check(key: str, shown: str) -> bool:
        problem = config.check_key_path(key, known, file, shown)
        if problem:
            problems.append(problem)
        return problem is None

    return check


def _axes(sweep: SweepFile, file: str) -> tuple[list[list[tuple[str, dict]]], list[Problem]]:
    """Each axis is a list of (source, overrides) options."""
    axes: list[list[tuple[str, dict]]] = []
    problems: list[Problem] = []
    check = _key_checker(file, problems)
    for key, values in sweep.grid.items():
        if check(key, f"grid.{key}"):
            if not values:
                problems.append(Problem(file, f"grid.{key}", "a non-empty list of values", "[]"))
            axes.append([(f"grid.{key}", {key: v}) for v in values])
    if sweep.zip:
        lengths = {k: len(v) for k, v in sweep.zip.items()}
        if len(set(lengths.values())) > 1:
            problems.append(Problem(file, "zip", "lists of equal length",
                                    ", ".join(f"{k}: {n}" for k, n in lengths.items())))
        elif 0 in lengths.values():
            problems.append(Problem(file, "zip", "non-empty lists", "[]"))
        elif all(check(k, f"zip.{k}") for k in list(sweep.zip)):
            rows = zip(*sweep.zip.values())
            axes.append([("zip", dict(zip(sweep.zip, row))) for row in rows])
    if sweep.random:
        axes.append(_random_axis(sweep.random, file, check, problems))
    if sweep.points:
        options = []
        for i, point in enumerate(sweep.points):
            if all(check(k, f"points[{i}].{k}") for k in point):
                options.append((f"points[{i}]", dict(point)))
        axes.append(options)
    return axes, problems


def _trials(sweep: SweepFile, base: JobSpec, file: str) -> list[tuple[str, dict]]:
    """A search's one axis: a point per trial slot, each with the search's spec values, and the
    search's parallelism as the backends' (the array's %N, the local processes)."""
    from workflow.launch import search

    problems: list[Problem] = []
    block = sweep.search
    values, found = search.check(block, base, file, _key_checker(file, problems))
    problems += found
    if problems:
        raise SpecError(f"Invalid sweep file {file}", problems)
    name = sweep.name or Path(file).stem
    fixed = {"slurm.array_parallelism": block.parallel, "local.max_parallel": block.parallel}
    if base.retry is None:  # a trial lost to the cluster runs again once, with the same parameters
        fixed["retry"] = {"max": 1, "on": list(TRIAL_RETRY)}
    return [("search", {"search": {**values, "study": name, "slot": slot}, **fixed}) for slot in range(block.trials)]


def _random_axis(block: RandomBlock, file: str, check, problems: list[Problem]) -> list[tuple[str, dict]]:
    rng = _random.Random(block.seed)
    samplers = {}
    for key, dist in block.params.items():
        shown = f"random.params.{key}"
        if not check(key, shown):
            continue
        if len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            problems.append(Problem(file, shown, "one of " + "|".join(DISTRIBUTIONS) + ": [...]",
                                    short(dist), suggest(next(iter(dist), ""), DISTRIBUTIONS)))
            continue
        kind, args = next(iter(dist.items()))
        try:
            samplers[key] = _sampler(kind, args)
        except (TypeError, ValueError) as exc:
            problems.append(Problem(file, f"{shown}.{kind}", str(exc), short(args)))
    if problems:
        return []
    return [("random", {k: s(rng) for k, s in samplers.items()}) for _ in range(block.n)]


def _sampler(kind: str, args: list):
    if kind == "choice":
        if not args:
            raise ValueError("a non-empty list of choices")
        return lambda rng: rng.choice(args)
    if len(args) != 2:
        raise ValueError("[low, high]")
    low, high = (float(a) for a in args)
    if not low < high:
        raise ValueError("low < high")
    if kind == "uniform":
        return lambda rng: rng.uniform(low, high)
    if kind == "int":
        return lambda rng: rng.randint(int(low), int(high))
    if low <= 0:
        raise ValueError("loguniform bounds above 0")
    return lambda rng: math.exp(rng.uniform(math.log(low), math.log(high)))


def expand(path: str | Path, cli_overrides: Iterable[str] = (), extra: dict | None = None) -> Sweep:
    """Sweep file -> validated points. Raises SpecError listing every problem."""
    path, cli_overrides = Path(path), tuple(cli_overrides)
    sweep = load_sweep_file(path)
    file = str(path)
    base_path = config.resolve_path(sweep.base, path.resolve().parent)
    if not base_path.is_file():
        raise SpecError(f"Invalid sweep file {path}", [Problem(file, "base", "an existing job spec file", sweep.base)])
    base_raw = config.load_raw(base_path)
    if extra:
        base_raw = deep_merge(base_raw, extra)
    fixed, problems = {}, []
    for key, value in sweep.overrides.items():
        problem = config.check_key_path(key, field_paths(), file, f"overrides.{key}")
        if problem:
            problems.append(problem)
        else:
            config.set_path(fixed, key, value)
    axes, axis_problems = _axes(sweep, file)
    problems += axis_problems
    if sweep.search and axes:
        problems.append(Problem(file, "search", "search alone (its trials are the points), without grid, zip, "
                                "random or points", ", ".join(k for k in ("grid", "zip", "random", "points")
                                                              if getattr(sweep, k))))
    if problems:
        raise SpecError(f"Invalid sweep file {path}", problems)
    cli = config.parse_overrides(cli_overrides)
    base_raw = deep_merge(base_raw, fixed)
    base_spec = config.validate(deep_merge(base_raw, cli), str(base_path), cli)  # base errors name the base file
    if sweep.search:
        axes = [_trials(sweep, base_spec, file)]

    count = math.prod(len(axis) for axis in axes)  # before building them: a typo can ask for billions
    if count > sweep.max_points:
        raise SpecError(f"Sweep {path} is too large", [Problem(
            file, "max_points", f"at most {sweep.max_points} points (raise max_points to allow more)",
            f"{count} points")])
    combos = list(itertools.product(*axes)) if axes else [()]
    return _resolve(path, sweep, base_raw, combos, cli, tuple(map(str, cli_overrides)))


def _resolve(path: Path, sweep: SweepFile, base_raw: dict, combos: list, cli: dict, added: tuple) -> Sweep:
    file = str(path)
    points: list[Point] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    searched = bool(combos and combos[0] and combos[0][0][0] == "search")
    if searched:  # the trials' parameters are the study's: the varying keys are the space's
        varying = sorted(sweep.search.space)
    else:
        varying = sorted({k for combo in combos for _, over in combo for k in over})
    labels = point_labels(varying)
    base = BaseBlocks(deep_merge(base_raw, cli))
    for index, combo in enumerate(combos):
        nested = nest({k: v for _, over in combo for k, v in over.items()})
        sources = {k: src for src, over in combo for k in over}
        try:
            spec = base.validate(nested, cli)
        except ValidationError as exc:
            for problem in problems_from(exc, file):
                src = sources.get(problem.key)
                key = src if src and src.endswith(problem.key) else f"{src}.{problem.key}" if src else problem.key
                problems.append(Problem(file, key, problem.expected, problem.given, problem.hint))
            continue
        digest = spec.point_hash(base.hash_texts)
        if digest in seen:
            problems.append(Problem(file, ", ".join(sorted(set(sources.values()))) or "points",
                                    "distinct points", f"point {index} duplicates point {seen[digest]}"))
            continue
        seen[digest] = index
        values = {k: spec.get(k) for k in varying}
        if searched:  # its values come from the study when its job starts
            values, name = {k: ASKED for k in varying}, f"trial={spec.search.slot}"
        else:
            name = point_name({k: spec.get(k) for k in sorted(sources)}, labels)
        spec.run_name = spec.run_name or name
        points.append(Point(index, name, digest, values, spec))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise SpecError(f"Invalid sweep {path}", unique)
    return Sweep(sweep.name or path.stem, file, points, varying, added)


def point_labels(varying: list[str]) -> dict[str, str]:
    """Each varying key as point names show it: by its last part unless two varying keys share
    it (train.learning_rate -> learning_rate)."""
    lasts = [k.rsplit(".", 1)[-1] for k in varying]
    return {k: last if lasts.count(last) == 1 else k for k, last in zip(varying, lasts)}


def point_name(own: dict, labels: dict[str, str]) -> str:
    """A point's name: the keys it sets itself, with their ``point_labels`` (learning_rate=1e-3);
    "default" when it sets none."""
    return ",".join(f"{labels[k]}={format_value(v)}" for k, v in own.items()) or "default"


def single(spec_path: str | Path, cli_overrides: Iterable[str] = (), extra: dict | None = None) -> Sweep:
    """``launch.py run spec.yaml [key=value ...]``: a sweep of one point, named after the spec
    file. The point's name adds the overrides, which set it apart from the other runs of the
    same file in the sweep's manifest: ``x[deepspeed.stage=3]``."""
    path = Path(spec_path)
    spec = config.load_spec(path, cli_overrides, extra)
    overrides = list(cli_overrides)
    if overrides and not spec.run_name:
        spec.run_name = f"{path.stem}[{','.join(overrides)}]"
    return one_point(path.stem, str(path), spec)


def one_point(name: str, file: str, spec: JobSpec) -> Sweep:
    """A sweep of one point (``run``, and the original command lines)."""
    spec.run_name = spec.run_name or name
    return Sweep(name, file, [Point(0, spec.run_name, spec.point_hash(), {}, spec)], [])
