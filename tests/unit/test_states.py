"""The typed states of a point."""

from __future__ import annotations

from workflow.launch.manifest import PointRecord


def test_states_are_typed_and_read_old_manifests():
    import json

    from workflow.states import State

    assert State.RUNNING.is_active and not State.RUNNING.is_terminal
    assert State.PREEMPTED.is_terminal and State.COMPLETED.is_terminal and not State.PLANNED.is_terminal
    record = PointRecord(0, "p", "h", "/tmp/p")
    assert json.loads(json.dumps({"state": record.state})) == {"state": "PLANNED"}  # files hold plain names
    assert State("FAILED") == "FAILED" and f"{State.FAILED:>8}" == "  FAILED"
