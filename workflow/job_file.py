"""The ``--job_file`` form of the original command lines, recognised without the launcher.

``python -m workflow.seq2seq --job_file <run dir>/job.json`` (or ``workflow.clf``) is what a
cluster backend such as ``ctl`` runs on a node. The shims read that form here and hand the run
directory to the node's job entry, so a node never imports the launcher (its console, rich,
the manifest). Any other command line goes to the original command line's parser, which
accepts the same forms (workflow.launch.original_cli).
"""

from __future__ import annotations

from pathlib import Path

FLAG = "--job_file"
SHORTEST = "--j"  # argparse takes any unambiguous prefix; no other flag of these command lines starts so


def prepared_run_dir(argv: list[str]) -> str | None:
    """The run directory of a command line that is only ``--job_file FILE``, as argparse reads it
    (``--job_file FILE``, ``--job_file=FILE``, or a prefix: ``--job FILE``); None otherwise."""
    if len(argv) == 1 and "=" in argv[0]:
        flag, value = argv[0].split("=", 1)
    elif len(argv) == 2:
        flag, value = argv
    else:
        return None
    if not (flag.startswith(SHORTEST) and FLAG.startswith(flag)) or not value or value.startswith("-"):
        return None
    return str(Path(value).resolve().parent)
