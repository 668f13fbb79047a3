"""The shims' reading of a lone ``--job_file`` agrees with the original command line's argparse
parser, so the forms a user or a backend types reach the node entry without the launcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow.job_file import prepared_run_dir
from workflow.launch.original_cli import ArgumentError, CLF_FLAGS, SEQ2SEQ_FLAGS, parser

ROUTED = [["--job_file", "runs/s/p/job.json"], ["--job_file=runs/s/p/job.json"], ["--job", "runs/s/p/job.json"],
          ["--j", "runs/s/p/job.json"], ["--job_f=runs/s/p/job.json"]]
NOT_ROUTED = [["--job-file", "x/job.json"], ["--jobs", "x/job.json"], ["-j", "x/job.json"], ["--job_file"],
              ["--job_file="], ["--job_file", "x/job.json", "--seed", "3"], ["--max_steps", "5"], []]


@pytest.mark.parametrize("flags", [SEQ2SEQ_FLAGS, CLF_FLAGS], ids=["seq2seq", "clf"])
@pytest.mark.parametrize("argv", ROUTED, ids=" ".join)
def test_each_form_argparse_reads_as_the_job_file_is_routed(argv, flags):
    parsed = parser("python -m workflow.seq2seq", flags).parse_args(argv).job_file
    assert prepared_run_dir(argv) == str(Path(parsed).resolve().parent) == str(Path("runs/s/p").resolve())


@pytest.mark.parametrize("argv", NOT_ROUTED, ids=lambda a: " ".join(a) or "nothing")
def test_any_other_command_line_is_left_to_the_parser(argv):
    assert prepared_run_dir(argv) is None


def test_forms_that_argparse_refuses_are_not_routed():
    for argv in (["--job-file", "x/job.json"], ["--jobs", "x/job.json"], ["--job_file"]):
        with pytest.raises(ArgumentError):
            parser("python -m workflow.seq2seq", SEQ2SEQ_FLAGS).parse_args(argv)
        assert prepared_run_dir(argv) is None
