"""``python -m workflow.seq2seq``: the shim of the original seq2seq command line (a fixed public name;
the command line itself is workflow.launch.original_cli, the recipe workflow.node.finetune_seq2seq)."""

import sys

from workflow.launch.original_cli import SEQ2SEQ_FLAGS, main

if __name__ == "__main__":
    sys.exit(main("seq2seq", SEQ2SEQ_FLAGS))
