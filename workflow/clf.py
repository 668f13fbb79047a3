"""``python -m workflow.clf``: the shim of the original classifier command line (a fixed public name;
the command line itself is workflow.launch.original_cli, the recipe workflow.node.finetune_classifier;
workflow.shim routes a lone ``--job_file`` to the node's job entry)."""

from workflow.shim import main

if __name__ == "__main__":
    main("classifier")
