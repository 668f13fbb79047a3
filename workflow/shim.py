"""What the shims of the original command lines (``python -m workflow.seq2seq`` and
``workflow.clf``, fixed public names) run: a lone ``--job_file`` (what cluster backends run) goes
to the node's job entry, never the launcher; any other command line to the original command
line's parser (workflow.launch.original_cli). An entry point like the shims, not shared code."""

from __future__ import annotations

import sys

from workflow.job_file import prepared_run_dir


def main(task: str) -> None:
    """Run the command line in ``sys.argv`` for ``task`` (seq2seq or classifier); leaves the process."""
    run_dir = prepared_run_dir(sys.argv[1:])
    if run_dir is not None:
        from workflow.node.run import main as run_job

        run_job(run_dir)  # leaves the process
    from workflow.launch import original_cli

    sys.exit(original_cli.main(task, original_cli.CLF_FLAGS if task == "classifier" else original_cli.SEQ2SEQ_FLAGS))
