"""``python -m workflow.seq2seq``: the original seq2seq command line (see workflow.legacy)."""

import sys

from workflow.legacy import SEQ2SEQ_FLAGS, main

if __name__ == "__main__":
    sys.exit(main("seq2seq", SEQ2SEQ_FLAGS))
