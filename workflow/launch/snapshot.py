"""The code a job runs: a copy of the tracked package, taken when a sweep is submitted.

Nodes import ``workflow`` from the snapshot, never from the checkout, so a job that starts
(or is requeued) after the checkout was edited runs the code it was submitted with, as with
submitit's ``RsyncSnapshot`` or dora's ``git_save``. Snapshots live in the sweep folder, keyed
by a digest of their content (identical code is copied once). A tree with uncommitted changes
is refused unless ``--allow_dirty``; the diff is then kept beside the snapshot and logged to
MLflow by the job.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from workflow.errors import Problem, SpecError
from workflow.launch.early import Started
from workflow.paths import PROJECT_ROOT

CODE_PATHS = ("workflow", "setup.cfg")  # what a node imports or reads
DIFF_NAME = "code.diff"
GIT_TIMEOUT_S = 20


@dataclass(frozen=True)
class Snapshot:
    root: Path          # <sweep>/code/<digest>: holds workflow/ and setup.cfg
    commit: str         # git HEAD of the checkout, or "unknown" outside git
    changes: tuple[str, ...]  # uncommitted changes under CODE_PATHS (git status lines)
    allow_dirty: bool
    files: tuple[str, ...]
    diff: str = ""

    @property
    def dirty(self) -> bool:
        return bool(self.changes)

    def check(self) -> None:
        """Refuse uncommitted changes unless --allow_dirty (checked after the input, before any write)."""
        if not self.changes or self.allow_dirty:
            return
        shown = "; ".join(line.strip() for line in self.changes[:5])
        more = f" (+{len(self.changes) - 5} more)" if len(self.changes) > 5 else ""
        raise SpecError("Uncommitted changes in the code a job would run", [Problem(
            str(PROJECT_ROOT), None, "a committed tree (the job runs a snapshot of it, recorded by commit)",
            shown + more, "commit them, or pass --allow_dirty (the diff is saved with the runs and logged to MLflow)")])

    @property
    def diff_path(self) -> Path:
        return self.root / DIFF_NAME

    def write(self) -> None:
        """Copy the files (once per digest; a copy is complete once its folder is renamed in place)."""
        if self.root.is_dir():
            return
        tmp = self.root.with_name(f".{self.root.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for name in self.files:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, target)
        if self.diff:
            (tmp / DIFF_NAME).write_text(self.diff)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, self.root)
        except OSError:  # another launch wrote the same digest first
            shutil.rmtree(tmp, ignore_errors=True)


def take(sweep_root: Path, allow_dirty: bool = False, started: Started | None = None) -> Snapshot:
    """Describe the snapshot of this checkout (nothing is written): its files, digest, commit and
    uncommitted changes (``check`` refuses those unless ``allow_dirty``). ``started``: where the
    command line started the git commands (``start``); those not started yet are started here."""
    started = started or Started()
    start(started)
    files = _files(started)
    changes = tuple(_git(started, *STATUS).splitlines())
    diff = _git(started, "diff", "HEAD", "--", *CODE_PATHS) if changes else ""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (PROJECT_ROOT / name).read_bytes() + b"\0")
    commit = _git(started, *HEAD).strip() or "unknown"
    return Snapshot(sweep_root / "code" / digest.hexdigest()[:12], commit, changes, allow_dirty, files, diff)


LIST_FILES = ("ls-files", "--cached", "--others", "--exclude-standard", "--", *CODE_PATHS)
STATUS = ("status", "--porcelain", "--", *CODE_PATHS)
HEAD = ("rev-parse", "HEAD")


def start(started: Started) -> None:
    """Start the git commands that ``take`` reads, side by side (``launch.py sweep|run`` calls
    this first, so that they run while the command line loads)."""
    started.start(*(_argv(args) for args in (LIST_FILES, STATUS, HEAD)), cwd=PROJECT_ROOT)


def _files(started: Started) -> tuple[str, ...]:
    """Tracked and untracked-but-not-ignored files under CODE_PATHS (every .py file outside git)."""
    listed = _git(started, *LIST_FILES)
    if listed:
        names = [n for n in listed.splitlines() if (PROJECT_ROOT / n).is_file()]
    else:
        names = [str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "workflow").rglob("*.py")]
        names += ["setup.cfg"] if (PROJECT_ROOT / "setup.cfg").is_file() else []
    return tuple(sorted(n for n in names if "__pycache__" not in n))


def _argv(args: tuple[str, ...]) -> tuple[str, ...]:
    # safe.directory: a checkout owned by another user (a shared clone, a container) still answers
    return ("git", "-c", f"safe.directory={PROJECT_ROOT}", *args)


def _git(started: Started, *args: str) -> str:
    """A git command's output in the project; empty outside a git checkout, without git, or
    when git does not answer in time."""
    try:
        answer = started.answer(_argv(args), GIT_TIMEOUT_S, cwd=PROJECT_ROOT)
    except OSError:
        return ""
    return answer.out if answer.ok else ""
