"""The original command lines (``python -m workflow.seq2seq`` / ``python -m workflow.clf``).

Their users typed argparse command lines, so these stay argparse (abbreviations, ``--k=v``,
``--k v``). A command line becomes a job spec and goes through the same path as
``launch.py run`` (local backend, MLflow). ``--job_file`` instead runs a prepared run
directory directly: that is what cluster backends such as ``ctl`` execute.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workflow.errors import Problem, SpecError, WorkflowError
from workflow.states import State

# flag -> (spec key path, type, help)
COMMON_FLAGS = {
    "data_name": ("data_name", str, "data file under mount/data"),
    "learning_rate": ("train.learning_rate", float, "peak learning rate"),
    "warmup_steps": ("train.warmup_steps", int, "linear warm-up steps"),
    "max_steps": ("train.max_steps", int, "optimizer steps"),
    "train_batch_size": ("train.train_batch_size", int, "micro batch size per device"),
    "eval_batch_size": ("train.eval_batch_size", int, "eval batch size per device"),
    "gradient_accumulation_steps": ("train.gradient_accumulation_steps", int, "micro batches per step"),
    "save_steps": ("train.save_steps", int, "checkpoint every N steps"),
    "eval_steps": ("train.eval_steps", int, "eval loss every N steps"),
    "seed": ("train.seed", int, "random seed"),
}
CLF_FLAGS = {
    **COMMON_FLAGS,
    "model_pretrain_name": ("model_init_path", str, "hub id or local path of the model"),
}
SEQ2SEQ_FLAGS = {
    **COMMON_FLAGS,
    "model_init_name": ("model_init_name", str, "model folder under mount/models"),
    "model_init_path": ("model_init_path", str, "local path or hub id of the model"),
    "temperature": ("generate.temperature", float, "sampling temperature (0: greedy)"),
    "n_samples": ("generate.n_samples", int, "samples per eval prompt"),
}


class ArgumentError(WorkflowError):
    """An unknown or malformed flag on an original command line."""


class Parser(argparse.ArgumentParser):
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
    for flag, (_, kind, text) in flags.items():
        dashed = f"--{flag.replace('_', '-')}"
        names = [f"--{flag}"] + ([dashed] if dashed != f"--{flag}" else [])
        p.add_argument(*names, dest=flag, type=kind, help=text)
    return p


def spec_from_args(args: argparse.Namespace, flags: dict, task: str) -> dict:
    from workflow import config
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


# task -> the module that carries its original command line
MODULES = {"seq2seq": "workflow.seq2seq", "classifier": "workflow.clf"}


def main(task: str, flags: dict, argv: list[str] | None = None) -> int:
    from workflow import console

    try:
        args = parser(f"python -m {MODULES[task]}", flags).parse_args(argv)
        if args.job_file:
            from workflow.entrypoint import main as run_job

            run_job(str(Path(args.job_file).resolve().parent))
            return 0
        return run_spec(spec_from_args(args, flags, task), args.training_run_name or task)
    except WorkflowError as exc:
        console.print_error(exc)
        return 2 if isinstance(exc, ArgumentError) else 1
    except KeyboardInterrupt:
        return 130


def run_spec(raw: dict, name: str) -> int:
    """The same path as ``launch.py run``."""
    from workflow import config, launcher, lifecycle
    from workflow.plan import make_plan
    from workflow.sweep import Point, Sweep, spec_hash

    spec = config.validate(raw, "<command line>").model_dump(mode="json")
    spec["run_name"] = spec["run_name"] or name
    plan = make_plan(Sweep(name, "<command line>", [Point(0, spec["run_name"], spec_hash(spec), {}, spec)], []))
    result = launcher.launch(plan)
    manifest = lifecycle.refresh(result.manifest)
    failed = [r for r in manifest.points.values() if r.state == State.FAILED]
    if failed:
        raise SpecError(f"{name} failed: {failed[0].error}", [Problem(failed[0].run_dir, "log.txt", "a finished run",
                                                                     State.FAILED)])
    return 0

