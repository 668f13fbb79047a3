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


def write_json(path: Path, data: Any, indent: int | None = 1, sort_keys: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=indent, sort_keys=sort_keys, default=str))
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
    """JSON lines in one write(2) with O_APPEND: the lines that many processes (a sweep's jobs)
    append to one file never interleave on a local file system."""
    data = "".join(json.dumps(row, default=str) + "\n" for row in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_lines_from(path: Path, offset: int) -> tuple[list[dict], int]:
    """The complete JSON lines after byte ``offset``, and the offset after the last of them (a
    line still being written is left for the next read; a garbled one is skipped)."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    rows = []
    for line in data[:end].splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows, offset + end
