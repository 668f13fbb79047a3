"""The code a job runs is the code that was submitted: a snapshot of the tracked package, taken at
submission, refusing uncommitted changes unless --allow_dirty (the diff is then kept)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import ROOT
from workflow.errors import SpecError
from workflow.launch import snapshot


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A clone of this project's committed tree, as the snapshot's source."""
    path = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    monkeypatch.setattr(snapshot, "PROJECT_ROOT", path)
    return path


def test_snapshot_copies_the_package_and_keeps_it(repo, tmp_path):
    taken = snapshot.take(tmp_path / "sweep")
    assert not taken.dirty and len(taken.commit) == 40 and "workflow/node/run.py" in taken.files
    taken.write()
    copied = taken.root / "workflow/node/run.py"
    assert copied.read_text() == (repo / "workflow/node/run.py").read_text()
    assert (taken.root / "setup.cfg").is_file() and not (taken.root / "tests").exists()
    (repo / "workflow/node/run.py").write_text("raise SystemExit('edited')\n")
    assert "raise SystemExit('edited')" not in copied.read_text()  # the snapshot does not follow the checkout
    assert snapshot.take(tmp_path / "sweep", allow_dirty=True).root != taken.root  # new code, new digest


def test_a_dirty_tree_is_refused_and_allowed_with_its_diff(repo, tmp_path):
    with (repo / "workflow/tree.py").open("a") as handle:
        handle.write("# a local experiment\n")
    with pytest.raises(SpecError) as caught:
        snapshot.take(tmp_path / "sweep").check()
    text = str(caught.value)
    assert "workflow/tree.py" in text and "--allow_dirty" in text
    taken = snapshot.take(tmp_path / "sweep", allow_dirty=True)
    taken.check()
    taken.write()
    assert taken.dirty and "+# a local experiment" in (taken.root / "code.diff").read_text()


