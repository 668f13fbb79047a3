"""SIGTERM on a node: the stop must not be lost where Python swallows exceptions."""

import gc
import signal
import sys
import time

import pytest

from workflow.node import run


class _RaisesOnCollect:
    def __del__(self):
        raise KeyboardInterrupt("terminated by signal 15")


def test_a_stop_swallowed_in_del_is_raised_again(monkeypatch):
    monkeypatch.setattr(sys, "unraisablehook", run._defer_swallowed_stop(sys.unraisablehook))
    previous = signal.signal(signal.SIGTERM, run._on_sigterm)
    try:
        with pytest.raises(KeyboardInterrupt, match="terminated by signal"):
            _RaisesOnCollect()  # collected at once: Python drops what __del__ raised
            gc.collect()
            time.sleep(1)  # the signal sent again lands here
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_other_unraisable_errors_still_reach_the_default_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", run._defer_swallowed_stop(seen.append))

    class Broken:
        def __del__(self):
            raise ValueError("boom")

    Broken()
    gc.collect()
    assert [type(u.exc_value) for u in seen] == [ValueError]
