"""``python -m workflow.clf``: the shim of the original classifier command line (a fixed public name;
the command line itself is workflow.launch.original_cli, the recipe workflow.node.finetune_classifier).
A lone ``--job_file`` (what cluster backends run) goes to the node's job entry, never the launcher."""

import sys

from workflow.job_file import prepared_run_dir

if __name__ == "__main__":
    run_dir = prepared_run_dir(sys.argv[1:])
    if run_dir is not None:
        from workflow.node.run import main as run_job

        run_job(run_dir)  # leaves the process
    from workflow.launch.original_cli import CLF_FLAGS, main

    sys.exit(main("classifier", CLF_FLAGS))
