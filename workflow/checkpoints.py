"""Checkpoint discovery, shared by training (resume) and export. No heavy imports.

The Trainer writes ``checkpoints/checkpoint-<step>/``; the tracking callback adds a ``.complete``
marker only after the Trainer finished writing one, so a checkpoint cut off by a kill or a full
disk is never resumed from, nor exported.
"""

from __future__ import annotations

import re

from workflow.rundir import RunDir

COMPLETE_MARKER = ".complete"


def latest_checkpoint(rd: RunDir) -> str | None:
    """The newest checkpoint that was completely written; partial ones are skipped."""
    if not rd.checkpoints.is_dir():
        return None
    found = []
    for folder in rd.checkpoints.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if match and (folder / COMPLETE_MARKER).is_file() and (folder / "trainer_state.json").is_file():
            found.append((int(match.group(1)), folder))
    return str(max(found)[1]) if found else None
