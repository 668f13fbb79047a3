"""``python -m workflow.seq2seq``: the shim of the original seq2seq command line (a fixed public name;
the command line itself is workflow.launch.original_cli, the recipe workflow.node.finetune_seq2seq;
workflow.shim routes a lone ``--job_file`` to the node's job entry)."""

from workflow.shim import main

if __name__ == "__main__":
    main("seq2seq")
