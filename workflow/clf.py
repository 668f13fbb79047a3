"""``python -m workflow.clf``: the shim of the original classifier command line (a fixed public name;
the command line itself is workflow.launch.original_cli, the recipe workflow.node.finetune_classifier)."""

import sys

from workflow.launch.original_cli import CLF_FLAGS, main

if __name__ == "__main__":
    sys.exit(main("classifier", CLF_FLAGS))
