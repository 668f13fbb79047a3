"""Every failure gets one cause: from what the job raised (the node's record) and from what the
scheduler reports, the scheduler's word winning where the node only saw a SIGTERM."""

from __future__ import annotations

import pytest

from workflow import failures
from workflow.errors import DataError
from workflow.failures import Cause, of_exception, of_point
from workflow.launch import console as ui
from workflow.launch.manifest import Manifest, PointRecord
from workflow.states import State


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001  the test keeps it with its traceback
        return caught


def test_exceptions_are_named_by_cause_with_where_they_were_raised():
    import torch

    assert of_exception(raised(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")))[0] \
        == Cause.OOM_GPU
    assert of_exception(raised(RuntimeError("CUDA error: out of memory")))[0] == Cause.OOM_GPU
    assert of_exception(raised(torch.distributed.DistBackendError("NCCL communicator was aborted")))[0] == Cause.NCCL
    assert of_exception(raised(RuntimeError("[Rank 1] Watchdog caught collective operation timeout")))[0] \
        == Cause.NCCL
    assert of_exception(raised(DataError("Invalid data file")))[0] == Cause.DATA
    assert of_exception(raised(KeyboardInterrupt("terminated by signal 15")))[0] == Cause.CANCELLED
    assert of_exception(raised(MemoryError()))[0] == Cause.OOM_HOST
    cause, where = of_exception(raised(ZeroDivisionError("division by zero")))
    assert cause == Cause.CODE and where.startswith("tests/unit/test_failures.py:"), where


def test_where_is_the_innermost_frame_outside_the_libraries():
    import json

    try:
        json.loads("{not json")  # raised inside the standard library
    except ValueError as exc:
        where = failures.raised_at(exc.__traceback__)
    assert where.startswith("tests/unit/test_failures.py:"), where


def test_the_schedulers_word_wins_and_the_nodes_record_names_the_rest():
    node = {"state": "CANCELLED", "cause": "cancelled", "where": "workflow/node/hf.py:9"}
    assert of_point(State.TIMEOUT, node) == (Cause.TIMEOUT, "workflow/node/hf.py:9")  # SIGTERM at the limit
    assert of_point(State.NODE_FAIL, {})[0] == Cause.NODE_FAIL
    assert of_point(State.OUT_OF_MEMORY, {})[0] == Cause.OOM_HOST
    assert of_point(State.PREEMPTED, {})[0] == Cause.PREEMPTED
    assert of_point(State.FAILED, {"cause": "oom_gpu", "where": "x.py:1"}) == (Cause.OOM_GPU, "x.py:1")
    assert of_point(State.FAILED, {})[0] == Cause.UNKNOWN  # killed before it could write (SIGKILL)
    assert of_point(State.FAILED, {"cause": "bogus"})[0] == Cause.UNKNOWN
    assert of_point(State.COMPLETED, node) == (None, None)
    assert of_point(State.RUNNING, node) == (None, None)


def test_exit_words_name_the_signal():
    assert failures.exit_words(-9) == "killed by SIGKILL"
    assert failures.exit_words(3) == "exit code 3"


def test_the_seam_reads_one_variable(monkeypatch):
    monkeypatch.delenv(failures.INJECT_ENV, raising=False)
    assert failures.injected_fault() is None
    monkeypatch.setenv(failures.INJECT_ENV, "oom_gpu@3")
    assert failures.injected_fault() == ("oom_gpu", 3)
    monkeypatch.setenv(failures.INJECT_ENV, "disk@3")
    with pytest.raises(ValueError, match="oom_gpu@STEP"):
        failures.injected_fault()
    import torch

    with pytest.raises(torch.OutOfMemoryError) as caught:
        failures.raise_injected("oom_gpu", 3)
    assert of_exception(caught.value)[0] == Cause.OOM_GPU
    with pytest.raises(torch.distributed.DistBackendError) as caught:
        failures.raise_injected("nccl", 3)
    assert of_exception(caught.value)[0] == Cause.NCCL


def test_status_shows_the_cause_and_groups_failures_by_it(isolated, capsys):
    manifest = Manifest("causes", "sweeps/c.yaml")
    for i, (state, cause) in enumerate([(State.COMPLETED, None), (State.FAILED, "code"), (State.TIMEOUT, None),
                                        (State.FAILED, "code")]):
        record = PointRecord(i, f"train.seed={i}", f"{i:012x}", str(isolated / f"p{i}"), state=state,
                             error="ZeroDivisionError: division by zero" if cause else None)
        record.settle_cause({"cause": cause, "where": "workflow/node/hf.py:212"} if cause else {})
        manifest.points[record.hash] = record
    assert manifest.cause_counts() == {"code": 2, "timeout": 1}
    ui.console.width = 80
    ui.print_status(manifest, [{"index": r.index, "name": r.name, "state": r.state, "job_id": None, "elapsed_s": None,
                                "error": r.error, "cause": r.cause, "where": r.where}
                               for r in manifest.ordered()], show_all=True)
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "failed by cause: code 2, timeout 1" in out
    line = next(line for line in out.splitlines() if "train.seed=1" in line)
    assert "code" in line and "hf.py:212" in line, out


class _Tracker:
    def __init__(self):
        self.tags, self.status = {}, None

    def set_tags(self, tags):
        self.tags.update(tags)

    def finish(self, status):
        self.status = status


@pytest.mark.parametrize("refusal, state, cause", [
    ("Job not requeued because: timed-out too many times.", State.TIMEOUT, Cause.TIMEOUT),
    ("Command '['scontrol', 'requeue', '97']' returned non-zero exit status 1.", State.PREEMPTED, Cause.PREEMPTED),
])
def test_a_preempted_job_the_scheduler_will_not_requeue_ends_with_its_cause(tmp_path, refusal, state, cause):
    """submitit raises instead of requeueing: no requeue left before the time limit, or a job
    that may not be requeued. The job's record and run then say why it ended."""
    from workflow.node.run import DistEnv, Job, on_not_requeued
    from workflow.rundir import RunDir

    rd = RunDir(tmp_path)
    rd.write_state(state=State.REQUEUED, preemptions=1)
    tracker = _Tracker()
    on_not_requeued(Job(None, {}, rd, DistEnv()), tracker, RuntimeError(refusal))
    recorded = rd.read_state()
    assert (recorded["state"], recorded["cause"], recorded["preemptions"]) == (state, cause, 1)
    assert of_point(State.FAILED, recorded)[0] == cause, "sacct says FAILED: the record names the cause"
    assert tracker.tags["failure.cause"] == cause and tracker.status == "KILLED"


def test_without_cuda_no_gpu_need_is_measured():
    import torch

    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert failures.gpu_need_gb(exc) is None and not torch.cuda.is_available()
    assert failures.ALLOCATION.search(str(exc)).groups() == ("2.00", "GiB")
