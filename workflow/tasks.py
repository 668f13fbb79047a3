"""The task registry: one entry per task, from its name to everything that depends on it. It
imports nothing heavy; the node loads a task's recipe (torch, transformers) only when it runs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    recipe: str                     # the node's recipe class, "module:Class" (see workflow.node.recipe)
    command: str                    # module of the original command line (python -m ...), also what ctl runs
    record_keys: tuple[str, ...]    # string fields every record of the task's data file needs
    blocks: tuple[str, ...]         # the task's own spec blocks; the other tasks' blocks are not its params

    def load_recipe(self) -> type:
        module, cls = self.recipe.split(":")
        return getattr(importlib.import_module(module), cls)


TASKS = {
    "seq2seq": Task("seq2seq", "workflow.node.finetune_seq2seq:Seq2SeqRecipe", "workflow.seq2seq",
                    ("prompt", "completion"), ("generate",)),
    "classifier": Task("classifier", "workflow.node.finetune_classifier:ClassifierRecipe", "workflow.clf",
                       ("input",), ("classifier",)),
}
