"""The shape of every task, after torchtune's recipes: ``setup`` (model, tokenizer, data and
Trainer) -> ``train`` (resuming from the newest complete checkpoint) -> ``save`` (the final
model, on every rank: ZeRO-3 gathers it collectively) -> ``evaluate`` (rank 0, on the saved
model: ZeRO-3 keeps only shards in memory, so it generates from the consolidated copy).

A task writes ``setup`` and ``evaluate``; ``run`` drives the steps, which are the same for
every task. The registry in ``workflow.tasks`` maps task names to recipe classes.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from transformers import set_seed

from workflow.jsonio import read_json
from workflow.node import hf, quiet
from workflow.rundir import RunDir
from workflow.spec import JobSpec
from workflow.tracking import MODEL_PATH_TAG


class Recipe(ABC):
    def __init__(self, spec: JobSpec, rd: RunDir, tracker, dist, context: dict | None = None):
        self.spec, self.rd, self.tracker, self.dist = spec, rd, tracker, dist
        self.context = context or {}  # the launcher's (and, for a search trial, its number)
        self.log = logging.getLogger(f"workflow.{spec.task}")
        self.tokenizer = None
        self.params: dict = {}  # task-specific params logged with the spec

    @abstractmethod
    def setup(self, args, callbacks: list):
        """Load the model, tokenizer and data; return the Trainer (``args`` exist before the
        model, so ZeRO-3 partitions it while loading)."""

    @abstractmethod
    def evaluate(self, model) -> dict:
        """Final metrics of the trained model on the eval split; writes predictions.json."""

    def run(self) -> dict:
        spec = self.spec
        set_seed(spec.train.seed)
        args = hf.training_args(spec, self.rd)
        callback = hf.TrackingCallback(self.tracker, spec.samples_per_step)
        pruning = None
        if spec.search is not None:
            from workflow.node import trial

            pruning = trial.PruningCallback(spec.search, self.rd.root.parent, self.dist.is_main,
                                            self.context["trial"])
        trainer = self.setup(args, [callback, hf.PreemptionCallback(spec.speed.preemption_check_steps),
                                    *hf.fault_injection(self.rd), *([pruning] if pruning else [])])
        quiet.without_printer(trainer)
        self.tracker.log_params({**spec.tracked_params(), **hf.package_versions(), **self.params})
        self.tracker.log_artifact(self.rd.spec_yaml)
        self.log.info("world size %d (%s), global batch %d", args.world_size, args.parallel_mode.value,
                      spec.samples_per_step)
        hf.train_or_evaluate(trainer, spec, self.rd, self.tracker)
        if spec.train.save:
            saved, results = hf.save_final(trainer, self.tokenizer, spec, self.rd), None
        else:  # a probe: no model is written, and the eval uses the one in memory
            saved, results = None, hf.unsaved_results(trainer)
            hf.end_collectives(trainer)
        if not self.dist.is_main:
            return {}
        if saved is not None:
            self.tracker.set_tags({MODEL_PATH_TAG: str(saved)})  # where the model is: a path, not a copy
        if results is None:
            results = self.evaluate(trainer.model if saved is None else hf.inference_model(trainer, saved))
            self.plot()
        recorded = hf.record_results(results, callback, trainer, self.rd, self.tracker)
        if pruning is not None:
            trial.finish(pruning, recorded, self.tracker)
        return recorded

    def plot(self) -> None:
        """The task's eval plots, as files and MLflow artifacts; a failure costs only the pictures."""
        try:
            from workflow.node import plots

            for path in plots.draw(self.spec.task, read_json(self.rd.predictions), self.rd.plots):
                self.tracker.log_artifact(path, "plots")
        except Exception as exc:  # noqa: BLE001 - a finished job is never failed by a picture
            self.log.warning("eval plots skipped (%s: %s)", type(exc).__name__, exc)
