"""The task registry: one entry per task, from its name to everything that depends on it. It
imports nothing heavy; the node loads a task's recipe (torch, transformers) only when it runs.

- ``recipe``: the node's recipe class (``module:Class``), see ``workflow.node.recipe``;
- ``command``: the module of the task's original command line (``python -m workflow.seq2seq``),
  which is also what the ``ctl`` backend runs;
- ``record_keys``: the string fields every record of the task's data file needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    recipe: str
    command: str
    record_keys: tuple[str, ...]

    def load_recipe(self) -> type:
        module, cls = self.recipe.split(":")
        return getattr(importlib.import_module(module), cls)


TASKS = {
    "seq2seq": Task("seq2seq", "workflow.node.finetune_seq2seq:Seq2SeqRecipe", "workflow.seq2seq",
                    ("prompt", "completion")),
    "classifier": Task("classifier", "workflow.node.finetune_classifier:ClassifierRecipe", "workflow.clf",
                       ("input",)),
}
