"""JSON files: the one place they are read and written. Writes are atomic (a temp file in the
same folder, then a rename), so a reader never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    """The file's value; {} when it is missing or unreadable (a file being replaced, a torn copy)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=indent, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a JSON-lines file, up to a torn last line (a kill mid-write)."""
    rows = []
    try:
        with Path(path).open() as handle:
            for line in handle:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
    except OSError:
        pass
    return rows


def append_jsonl(path: Path, rows: list[dict]) -> None:
    with Path(path).open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
