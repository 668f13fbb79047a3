"""A search trial on a node: ask the study for this point's parameters when the job starts
(rank 0; the other ranks read them from ``trial.json``), report the metric at each evaluation
and stop the trial when the pruner says so, then tell the study how it ended.

A requeued or resumed job reattaches to its own trial: ``trial.json`` in the run folder keeps
its number and parameters, and a step already reported is not reported again. The pruner's
decision is reached by rank 0 and broadcast as a max-reduce on the process group's device
(``hf.reduce_max``: NCCL takes the rank's GPU, gloo the CPU); every rank then saves a
checkpoint and stops through the Trainer, never by raising inside a collective. A study that
cannot be reached at the start fails the job there, before training; one that becomes
unreachable later leaves training to go on without pruning, and the job says so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from transformers import TrainerCallback

from workflow.errors import JobError, Problem
from workflow.jsonio import read_json, write_json
from workflow.spec import JobSpec, TrialSpec
from workflow.study import SEARCH_FILE, open_storage, storage_of
from workflow.tree import set_path

log = logging.getLogger("workflow.search")
TRIAL_FILE = "trial.json"
WAIT_S = 600  # how long ranks other than 0 wait for rank 0's trial.json


def attach(job):
    """The job with this trial's parameters in its spec (unchanged when it is not a trial)."""
    search = job.spec.search
    if search is None:
        return job
    path = job.rd.root / TRIAL_FILE
    if job.dist.is_main:
        found = read_json(path) if path.is_file() else {}
        if found.get("number") is None:
            found = ask(search, job.rd.root.parent)
            log.info("trial %d of study %s: %s", found["number"], search.study, found["params"])
        elif failed(search, job.rd.root.parent, found["number"]):  # a retry: a new trial, the same parameters
            before = found["number"]
            found = ask(search, job.rd.root.parent, found["params"])
            log.info("trial %d of study %s: trial %d again (it failed), %s", found["number"], search.study, before,
                     found["params"])
        else:
            log.info("trial %d of study %s again (resumed): %s", found["number"], search.study, found["params"])
        write_json(path, found)
        info = job.rd.root.parent / SEARCH_FILE  # what status reads to find the study
        if not info.is_file():
            write_json(info, {"study": search.study, "metric": search.metric,
                              "storage": storage_of(search.model_dump(), job.rd.root.parent)})
    else:
        found = _wait_for(path)
    spec = resolved(job.spec, found["params"])
    return replace(job, spec=spec, context={**job.context, "trial": found["number"]})


def resolved(spec: JobSpec, params: dict) -> JobSpec:
    """The spec with the trial's parameters set (validated as a spec file's would be)."""
    data = spec.model_dump(mode="json")
    for key, value in params.items():
        set_path(data, key, value)
    return JobSpec.model_validate(data)


def study_of(search: TrialSpec, sweep_dir: Path):
    """The study (created by the first trial to start). Raises JobError when it cannot be reached."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_of(search.model_dump(), sweep_dir)
    try:
        return optuna.create_study(study_name=search.study, storage=open_storage(storage), load_if_exists=True,
                                   direction=search.direction, sampler=sampler(search), pruner=pruner(search))
    except Exception as exc:  # noqa: BLE001 - any storage failure: a clear error before training
        raise JobError(f"The search's study cannot be reached: {storage}", [Problem(
            storage, "search.storage", "a reachable Optuna storage (a JournalFile path on a shared file system, "
            "or an RDB URL)", f"{type(exc).__name__}: {str(exc)[:300]}")]) from exc


def failed(search: TrialSpec, sweep_dir: Path, number: int) -> bool:
    """Whether the study holds trial ``number`` as FAIL (the job that ran it failed)."""
    return study_of(search, sweep_dir).trials[number].state.name == "FAIL"


def ask(search: TrialSpec, sweep_dir: Path, params: dict | None = None) -> dict:
    """A new trial from the sampler, which sees every trial finished so far (``params``: a trial
    with these, for the retry of a failed one)."""
    study = study_of(search, sweep_dir)
    if params:
        study.enqueue_trial(params)
    trial = study.ask()
    trial.set_user_attr("slot", search.slot)
    params = {}
    for key, dist in search.space.items():
        kind, args = next(iter(dist.items()))
        if kind == "choice":
            params[key] = trial.suggest_categorical(key, args)
        elif kind == "int":
            params[key] = trial.suggest_int(key, int(args[0]), int(args[1]))
        else:
            params[key] = trial.suggest_float(key, float(args[0]), float(args[1]), log=kind == "loguniform")
    return {"number": trial.number, "params": params, "asked_at": time.time()}


def sampler(search: TrialSpec):
    """The study's sampler, seeded per trial slot: every trial's job builds its own sampler, and
    one seed would have them all propose the same first parameters."""
    import optuna

    seed = search.seed * 100_003 + search.slot
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=search.startup)
    kinds = {"cmaes": optuna.samplers.CmaEsSampler, "random": optuna.samplers.RandomSampler}
    if search.sampler == "grid":
        grid = {k: (v["choice"] if "choice" in v else list(range(int(v["int"][0]), int(v["int"][1]) + 1)))
                for k, v in search.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return kinds[search.sampler](seed=seed)


def pruner(search: TrialSpec):
    import optuna

    if search.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=search.min_steps,
                                                      reduction_factor=search.reduction)
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=search.min_steps, reduction_factor=search.reduction)
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=search.min_steps)
    return optuna.pruners.NopPruner()


def _wait_for(path: Path) -> dict:
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        found = read_json(path) if path.is_file() else {}
        if found.get("number") is not None:
            return found
        time.sleep(0.5)
    raise JobError("Rank 0 asked the study for no trial", [Problem(str(path), "search", "rank 0's trial.json within "
                                                                  f"{WAIT_S} s", "nothing")])


class PruningCallback(TrainerCallback):
    """At each evaluation: rank 0 reports the metric and asks the pruner; every rank gets the
    decision (a collective on the group's device) and, when pruned, saves and stops."""

    def __init__(self, search: TrialSpec, sweep_dir: Path, is_main: bool, number: int):
        self.search, self.sweep_dir, self.is_main, self.number = search, sweep_dir, is_main, number
        self.trial = None
        self.pruned_at: int | None = None
        self.last: float | None = None
        self.reachable = True

    def _trial(self):
        if self.trial is None:
            import optuna

            study = study_of(self.search, self.sweep_dir)
            self.study = study
            self.trial = optuna.Trial(study, study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, self.number))
        return self.trial

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        from workflow.node.hf import _any_rank  # the preemption flag's collective: on the group's device

        value = (metrics or {}).get(self.search.metric)
        stop = False
        if self.is_main and value is not None:
            self.last = float(value)
            stop = self._report(state.global_step, float(value))
        if _any_rank(stop, args.device):
            self.pruned_at = state.global_step
            log.warning("trial %d pruned at step %d (%s %.4g)", self.number, state.global_step, self.search.metric,
                        self.last if self.last is not None else float("nan"))
            control.should_save = True
            control.should_training_stop = True
        return control

    def _report(self, step: int, value: float) -> bool:
        if not self.reachable or self.search.pruner == "none":
            return False
        try:
            trial = self._trial()
            done = self.study._storage.get_trial(trial._trial_id).intermediate_values
            if step not in done:  # a resumed trial does not report a step twice
                trial.report(value, step)
            return trial.should_prune()
        except Exception as exc:  # noqa: BLE001 - an outage costs the pruning, never the run
            self.reachable = False
            log.warning("the study cannot be reached (%s: %s): training goes on without pruning",
                        type(exc).__name__, str(exc)[:200])
            return False


def finish(callback: PruningCallback | None, results: dict, tracker) -> None:
    """Rank 0: tell the study how the trial ended (PRUNED with its last value, else COMPLETE with
    the metric), and tag the run."""
    if callback is None or not callback.is_main:
        return
    import optuna

    search = callback.search
    value = results.get(search.metric, callback.last)
    tags = {"search.trial": str(callback.number), "search.study": search.study}
    try:
        study = study_of(search, callback.sweep_dir)
        if callback.pruned_at is not None:
            study.tell(callback.number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            tags.update({"search.state": "PRUNED", "search.pruned_step": str(callback.pruned_at)})
        else:
            study.tell(callback.number, value, skip_if_finished=True)
            tags["search.state"] = "COMPLETE"
    except Exception as exc:  # noqa: BLE001 - the run's results stand; status marks the trial later
        log.warning("could not tell the study how trial %d ended (%s: %s)", callback.number, type(exc).__name__, exc)
    tracker.set_tags(tags)


def fail(job) -> None:
    """Rank 0, a job that raised: the trial is FAIL in the study (best effort)."""
    number = job.context.get("trial")
    if job.spec.search is None or number is None or not job.dist.is_main:
        return
    try:
        import optuna

        study_of(job.spec.search, job.rd.root.parent).tell(number, state=optuna.trial.TrialState.FAIL,
                                                           skip_if_finished=True)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not mark trial %d failed in the study (%s)", number, exc)
