"""``python -m workflow.clf``: the original classifier command line (see workflow.legacy)."""

import sys

from workflow.legacy import CLF_FLAGS, main

if __name__ == "__main__":
    sys.exit(main("classifier", CLF_FLAGS))
