"""Typed errors. The library raises these; only launch.py formats and exits.

Every user-facing problem is a ``Problem``: where (file + dotted key path), what was
expected, what was given, and an optional hint (e.g. "did you mean ...").
One ``WorkflowError`` may carry many problems, so validation reports all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option most like ``word``, when one is close enough to be what was meant."""
    import difflib  # only an error needs it: not imported by every command

    close = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(word: str, options: Iterable[str]) -> str | None:
    """Return a "did you mean" hint for ``word`` among ``options``."""
    options = sorted(set(options))
    close = closest(word, options)
    if close:
        return f"did you mean '{close}'?"
    if options:
        return "valid keys: " + ", ".join(options)
    return None


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_user_text(path: Path, error: type[WorkflowError]) -> str:
    """A file the user wrote (a spec, a data file), as text: UTF-8 (a leading BOM is dropped),
    else ``error`` naming the file, the line and the first byte that is not UTF-8 (a file saved
    as Latin-1 or UTF-16 by an editor or a spreadsheet)."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text", [not_utf8(str(path), raw[:exc.start].count(b"\n") + 1,
                                                            raw[exc.start])]) from None


def not_utf8(file: str, line: int, byte: int) -> Problem:
    return Problem(file, f"line {line}", "UTF-8 text", f"byte 0x{byte:02x}",
                   "save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 in.json > out.json")
