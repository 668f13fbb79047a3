"""Adaptive search, the launcher's side: a sweep file's ``search:`` block, checked before anything
is submitted, becomes ``trials`` points. Each point is a trial slot; its job asks the study for
its parameters when it starts (``workflow.node.trial``), so the sampler sees every trial that
finished before it. The study is an Optuna JournalFile storage in the sweep's folder (safe on a
shared file system, no service to run), or an RDB URL (``search.storage``): ``workflow.study``.

Optuna is imported only by what reads or writes a study (the node, ``status`` of a search).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from workflow.errors import Problem, short, suggest
from workflow.metrics import AT_EVAL, METRICS, lookup, lower_is_better
from workflow.spec import DISTRIBUTIONS, PRUNERS, SAMPLERS, JobSpec
from workflow.study import SEARCH_FILE, open_storage



class PrunerBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_steps: PositiveInt = Field(100, description="The first rung: no trial is stopped before this step.")
    reduction: int = Field(3, ge=2, description="ASHA/hyperband: 1/reduction of the trials go on at each rung.")


class SearchBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    space: dict[str, dict[str, list]] = Field(..., min_length=1,
                                              description="key.path: {loguniform|uniform|int|choice: [...]}")
    sampler: str = Field("tpe", description="tpe | gp | cmaes | random | grid")
    trials: PositiveInt = Field(..., description="The total budget of trials.")
    parallel: PositiveInt = Field(4, description="Trials running at once (a SLURM array's %N).")
    metric: str = Field("eval_loss", description="What the study optimises, from the metric registry.")
    pruner: Union[str, dict[str, Optional[PrunerBlock]]] = Field(
        "none", description="asha | median | hyperband | none, or {asha: {min_steps, reduction}}")
    seed: int = Field(0, description="The sampler's seed.")
    storage: Optional[str] = Field(None, description="An RDB URL (default: a JournalFile in the sweep's folder).")


def check(block: SearchBlock, base: JobSpec, file: str, check_key) -> tuple[dict, list[Problem]]:
    """The block as the trials' ``search`` spec values (less the slot), and every problem with it."""
    problems: list[Problem] = []
    if block.sampler not in SAMPLERS:
        problems.append(Problem(file, "search.sampler", "one of " + ", ".join(SAMPLERS), short(block.sampler),
                                suggest(block.sampler, SAMPLERS)))
    for key, dist in block.space.items():
        shown = f"search.space.{key}"
        if not check_key(key, shown):
            continue
        kind = next(iter(dist), "")
        if len(dist) != 1 or kind not in DISTRIBUTIONS:
            problems.append(Problem(file, shown, "one of " + "|".join(DISTRIBUTIONS) + ": [...]", short(dist),
                                    suggest(kind, DISTRIBUTIONS)))
            continue
        problem = _bounds(kind, dist[kind])
        if problem:
            problems.append(Problem(file, f"{shown}.{kind}", problem, short(dist[kind])))
    if block.sampler == "grid" and any(next(iter(d), "") not in ("choice", "int") for d in block.space.values()):
        problems.append(Problem(file, "search.sampler", "grid with choice or int distributions only", "grid"))
    if block.parallel > block.trials:
        problems.append(Problem(file, "search.parallel", f"at most trials ({block.trials})", str(block.parallel)))
    metric = lookup(block.metric)
    if metric is None:
        names = [m.name for m in METRICS]
        problems.append(Problem(file, "search.metric", "a metric of the registry: " + ", ".join(names), short(block.metric),
                                suggest(block.metric, names)))
    kind, rung = _pruner(block.pruner, file, problems)
    if kind != "none" and metric is not None and block.metric not in AT_EVAL:
        problems.append(Problem(file, "search.metric", "with a pruner, a metric computed at every evaluation: "
                                + ", ".join(AT_EVAL), block.metric, f"{block.metric} is computed once, after "
                                "training; use eval_loss, or pruner: none"))
    train = base.train
    if kind != "none" and train.max_steps is not None and rung.min_steps > train.max_steps:
        problems.append(Problem(file, "search.pruner.min_steps", f"at most train.max_steps ({train.max_steps})",
                                str(rung.min_steps)))
    elif kind != "none" and rung.min_steps % train.eval_steps:
        problems.append(Problem(file, "search.pruner.min_steps", f"a multiple of train.eval_steps ({train.eval_steps})"
                                ": trials are compared at their evaluations", str(rung.min_steps),
                                f"e.g. {max(1, round(rung.min_steps / train.eval_steps)) * train.eval_steps}"))
    startup = min(10, max(2, block.trials // 4))  # 10 random trials of 16 would leave TPE little to guide
    values = {"study": "", "space": block.space, "sampler": block.sampler, "seed": block.seed, "startup": startup,
              "metric": block.metric,
              "pruner": kind, "min_steps": rung.min_steps, "reduction": rung.reduction, "storage": block.storage}
    return values, problems


def _bounds(kind: str, args: list) -> str | None:
    if kind == "choice":
        return None if args else "a non-empty list of choices"
    if len(args) != 2:
        return "[low, high]"
    try:
        low, high = (float(a) for a in args)
    except (TypeError, ValueError):
        return "numbers [low, high]"
    if not low < high:
        return f"low < high (the bounds are reversed: [{args[1]}, {args[0]}]?)" if low > high else "low < high"
    if kind == "loguniform" and low <= 0:
        return "loguniform bounds above 0"
    if kind == "int" and (low != int(low) or high != int(high)):
        return "whole numbers [low, high]"
    return None


def _pruner(value: Any, file: str, problems: list[Problem]) -> tuple[str, PrunerBlock]:
    """``asha`` or ``{asha: {min_steps: 100, reduction: 3}}`` -> (kind, its settings)."""
    if isinstance(value, dict):
        if len(value) != 1:
            problems.append(Problem(file, "search.pruner", "one pruner", short(value)))
            return "none", PrunerBlock()
        kind, rung = next(iter(value.items()))
        rung = rung or PrunerBlock()
    else:
        kind, rung = str(value), PrunerBlock()
    if kind not in PRUNERS:
        problems.append(Problem(file, "search.pruner", "one of " + ", ".join(PRUNERS), short(kind),
                                suggest(kind, PRUNERS)))
        return "none", rung
    return kind, rung


def rungs(values: dict, max_steps: int | None) -> list[int]:
    """The steps at which the pruner compares trials (ASHA: min_steps x reduction^k)."""
    if values["pruner"] == "none" or not max_steps:
        return []
    if values["pruner"] == "median":
        return [values["min_steps"], "then every evaluation"]
    steps, step = [], values["min_steps"]
    while step <= max_steps:
        steps.append(step)
        step *= values["reduction"]
    return steps


def describe(values: dict, trials: int, parallel: int, max_steps: int | None) -> list[str]:
    """The dry run's lines about the search."""
    lines = [f"search: {trials} trials, {parallel} at once; sampler {values['sampler']} (seed {values['seed']}); "
             f"{values['metric']} ({'lower' if lower_is_better(values['metric']) else 'higher'} is better)"]
    for key, dist in values["space"].items():
        kind, args = next(iter(dist.items()))
        lines.append(f"  {key}: {kind} {args}")
    steps = rungs(values, max_steps)
    lines.append(f"  pruner {values['pruner']}" + (f": rungs at steps {', '.join(map(str, steps))}" if steps else ""))
    if max_steps:
        lines.append(f"  budget: at most {trials * max_steps} training steps ({trials} x {max_steps})")
    return lines


def summary(storage: str, study_name: str) -> dict | None:
    """The study as ``status`` shows it: trials by state, the best value and its parameters, the
    steps trained; None when there is no study yet. Imports optuna."""
    if "://" not in storage and not Path(storage).is_file():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        return None
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = (min if study.direction.name == "MINIMIZE" else max)(complete, key=lambda t: t.value) if complete else None
    steps = sum(max(t.intermediate_values, default=0) for t in trials)
    return {"states": states, "trials": len(trials), "steps": steps,
            "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params}}


def shown(summary_: dict, metric: str) -> str:
    """One line for status: ``search: 8 trials: COMPLETE 5, PRUNED 2; best eval_loss 0.41 (trial 3: ...)``."""
    states = ", ".join(f"{k} {v}" for k, v in sorted(summary_["states"].items()))
    best = summary_["best"]
    text = f"search: {summary_['trials']} trials: {states}; {summary_['steps']} steps reported"
    if best:
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in best["params"].items())
        text += f"; best {metric} {best['value']:.4g} (trial {best['number']}: {params})"
    return text


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) and not math.isnan(value) else str(value)


def reconcile(manifest) -> list[str]:
    """``status`` of a search: trials whose job failed without telling the study (a dead node,
    scancel; the scheduler's word is the authority) become FAIL, and one line sums the study up.
    Nothing for a sweep that is not a search, or whose first trial has not started."""
    from workflow.jsonio import read_json
    from workflow.states import TERMINAL_FAILED

    path = manifest.path.parent / SEARCH_FILE
    info = read_json(path) if path.is_file() else {}
    if not info:
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=info["study"], storage=open_storage(info["storage"]))
        for record in manifest.points.values():
            number = read_json(record.rundir.root / "trial.json").get("number") \
                if (record.rundir.root / "trial.json").is_file() else None
            if record.state in TERMINAL_FAILED and number is not None and study.trials[number].state.name == "RUNNING":
                study.tell(number, state=optuna.trial.TrialState.FAIL)
        found = summary(info["storage"], info["study"])
    except Exception as exc:  # noqa: BLE001 - status still shows the points
        return [f"search: the study cannot be read ({type(exc).__name__}: {str(exc)[:200]})"]
    return [shown(found, info["metric"])] if found else []
