"""The original command lines (``python -m workflow.seq2seq`` / ``python -m workflow.clf``).

Their users typed argparse command lines, so these stay argparse (abbreviations, ``--k=v``,
``--k v``). A command line becomes a job spec and goes through the launch driver, as
``launch.py run`` does (local backend, MLflow). ``--job_file`` instead runs a prepared run
directory directly: that is what cluster backends such as ``ctl`` execute, and the task's
``python -m`` shim (``workflow/seq2seq.py``, ``workflow/clf.py``) hands a lone ``--job_file``
to the node's job entry before this module is imported (workflow.job_file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workflow.errors import JobError, Problem, WorkflowError
from workflow.spec import field_paths
from workflow.states import State
from workflow.tasks import TASKS

CLI = "<command line>"

COMMON = {"data_name": "data_name", "learning_rate": "train.learning_rate", "warmup_steps": "train.warmup_steps",
          "max_steps": "train.max_steps", "train_batch_size": "train.train_batch_size",
          "eval_batch_size": "train.eval_batch_size", "gradient_accumulation_steps": "train.gradient_accumulation_steps",
          "save_steps": "train.save_steps", "eval_steps": "train.eval_steps", "seed": "train.seed"}
DECODING = ("temperature", "n_samples", "max_new_tokens", "num_beams", "top_k", "top_p", "repetition_penalty",
            "no_repeat_ngram_size", "length_penalty", "penalty_alpha")


def flags(paths: dict[str, str]) -> dict[str, tuple[str, type, str]]:
    """flag -> (spec key path, type, help), the type and help taken from the spec's own fields."""
    fields = field_paths()

    def kind(path: str) -> type:
        text = str(fields[path].annotation)
        return float if "float" in text else int if "int" in text else str

    return {flag: (path, kind(path), fields[path].description or "") for flag, path in paths.items()}


CLF_FLAGS = flags({**COMMON, "model_pretrain_name": "model_init_path"})
SEQ2SEQ_FLAGS = flags({**COMMON, "model_init_name": "model_init_name", "model_init_path": "model_init_path",
                       **{name: f"generate.{name}" for name in DECODING}})


class ArgumentError(WorkflowError):
    """An unknown or malformed flag on an original command line."""


class Parser(argparse.ArgumentParser):
    def _get_option_tuples(self, option_string: str) -> list:
        """Prefix matches, one per flag: ``--data`` matches ``--data_name`` and its spelling
        ``--data-name``, which are one flag, so it is not ambiguous (argparse counts both)."""
        found, seen = [], set()
        for option in super()._get_option_tuples(option_string):
            if id(option[0]) not in seen:
                seen.add(id(option[0]))
                found.append(option)
        return found

    def error(self, message: str) -> None:  # argparse would print and exit; raise a typed error
        known = ", ".join(sorted(a.option_strings[0] for a in self._actions if a.option_strings))
        raise ArgumentError(f"{self.prog}: {message}", [Problem("<command line>", None, f"one of the flags: {known}",
                                                                message)])


def parser(prog: str, flags: dict) -> Parser:
    p = Parser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--job_file", help="run a prepared run directory's job.json (what cluster backends call)")
    p.add_argument("--training_run_name", help="name of this run; the final model goes to mount/models/<name>")
    p.add_argument("--no_train", action="store_true", help="evaluate the initial model only")
    p.add_argument("--spec", help="a job spec YAML to start from (flags override it)")
    p.add_argument("--allow_dirty", action="store_true", help="run with uncommitted changes (the diff is recorded)")
    for flag, (_, kind, text) in flags.items():
        dashed = f"--{flag.replace('_', '-')}"
        names = [f"--{flag}"] + ([dashed] if dashed != f"--{flag}" else [])
        p.add_argument(*names, dest=flag, type=kind, help=text)
    return p


def spec_from_args(args: argparse.Namespace, flags: dict, task: str) -> dict:
    from workflow.launch import config
    from workflow.paths import models_dir

    raw: dict = config.load_raw(Path(args.spec)) if args.spec else {}
    raw["task"] = task
    for flag, (path, _, _) in flags.items():
        value = getattr(args, flag)
        if value is not None:
            config.set_path(raw, path, value)
    if args.no_train:
        config.set_path(raw, "train.do_train", False)
    if args.training_run_name:
        raw["run_name"] = args.training_run_name
        raw["output_dir"] = str(models_dir() / args.training_run_name)
    return raw


def main(task: str, flags: dict, argv: list[str] | None = None) -> int:
    from workflow.launch import console

    try:
        args = parser(f"python -m {TASKS[task].command}", flags).parse_args(argv)
        if args.job_file:  # with other flags (the shim runs a lone --job_file without the launcher)
            from workflow.node.run import main as run_job

            run_job(str(Path(args.job_file).resolve().parent))  # leaves the process
        return run_spec(spec_from_args(args, flags, task), args.training_run_name or task, args.allow_dirty)
    except WorkflowError as exc:
        console.print_error(exc)
        return 2 if isinstance(exc, ArgumentError) else 1
    except KeyboardInterrupt:
        return 130


def run_spec(raw: dict, name: str, allow_dirty: bool = False) -> int:
    """The same path as ``launch.py run``."""
    from workflow.launch import config, driver
    from workflow.launch.sweep import one_point

    sweep = one_point(name, CLI, config.validate(raw, CLI))
    outcome = driver.launch(driver.launch_plan(sweep, allow_dirty=allow_dirty))
    if outcome.failed:
        record = outcome.failed[0]
        raise JobError(f"{name} failed: {record.error}", [Problem(record.run_dir, "log.txt", "a finished run",
                                                                 State.FAILED)])
    return 0
