"""Typed errors. The library raises these; only launch.py formats and exits.

Every user-facing problem is a ``Problem``: where (file + dotted key path), what was
expected, what was given, and an optional hint (e.g. "did you mean ...").
One ``WorkflowError`` may carry many problems, so validation reports all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Problem:
    file: str | None
    key: str | None
    expected: str
    given: str | None = None
    hint: str | None = None

    def render(self) -> str:
        where = ":".join(x for x in (self.file, self.key) if x) or "<input>"
        text = f"{where}: expected {self.expected}"
        if self.given is not None:
            text += f", got {self.given}"
        if self.hint:
            text += f" ({self.hint})"
        return text


@dataclass
class WorkflowError(Exception):
    """Base error: a headline and a list of problems."""

    headline: str
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.headline)

    def __str__(self) -> str:
        lines = [self.headline] + [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)


class SpecError(WorkflowError):
    """A job spec or sweep file is invalid."""


class DataError(WorkflowError):
    """A data file is missing or malformed."""


class BackendError(WorkflowError):
    """A backend cannot accept or run the request."""


class ManifestError(WorkflowError):
    """The sweep manifest is missing, locked or corrupt."""


class JobError(WorkflowError):
    """A job failed while running."""


def suggest(word: str, options: Iterable[str]) -> str | None:
    """Return a "did you mean" hint for ``word`` among ``options``."""
    import difflib  # only an error needs it: not imported by every command

    options = sorted(set(options))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if options:
        return "valid keys: " + ", ".join(options)
    return None


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
