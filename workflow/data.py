"""Data files: find them, and check their shape before anything is submitted.

Pure standard library, so the CLI can validate data without importing ``datasets``.
The task modules load the same files through ``datasets`` on the node.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from workflow.errors import DataError, Problem, not_utf8, read_user_text, short
from workflow.paths import data_dir
from workflow.tasks import TASKS

SPLITS = ("train", "eval")
TOP_LEVEL = SPLITS + ("labels",)  # "labels": the label set of a multi-label classifier file
MAX_PROBLEMS = 10


def data_path(data_name: str) -> Path:
    """A data file by name under mount/data (or an absolute path); ``name`` also finds ``name.json``,
    as the original command lines name their data (``--data_name synthetic_explain``)."""
    path = Path(data_name)
    path = path if path.is_absolute() else data_dir() / path
    with_json = path.with_name(path.name + ".json")
    return with_json if not path.exists() and with_json.is_file() else path


def load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"Data file not found: {path}",
                        [Problem(str(path), "data_name", f"a JSON file under {data_dir()}", "no such file")])
    try:
        return json.loads(read_user_text(path, DataError))
    except json.JSONDecodeError as exc:
        raise DataError(f"Malformed JSON in {path}",
                        [Problem(str(path), f"line {exc.lineno}, column {exc.colno}", "valid JSON", exc.msg)]) from None


def find(name_or_path: str) -> Path:
    """A file given on the command line: a path, else a data name under mount/data."""
    given = Path(name_or_path).expanduser()
    return given.resolve() if given.is_file() else data_path(name_or_path)


def given_file(name_or_path: str, flag: str) -> Path:
    """A file that a command-line flag names (``find``), or a DataError naming the flag."""
    path = find(name_or_path)
    if not path.is_file():
        raise DataError(f"No such file: {name_or_path}", [Problem(
            "<command line>", flag, f"a file, from where the command runs or under {data_dir()}",
            repr(name_or_path), "no such file")])
    return path


def load_labels(ref: str | list[str]) -> list[str]:
    """The strings of ``generate.allowed_outputs``: a list, or a file (a JSON list, a data file's
    top-level "labels", or one per line). Raises DataError when missing or empty."""
    if isinstance(ref, list):
        return list(ref)
    path = find(ref)
    if not path.is_file():
        raise DataError(f"Allowed outputs not found: {path}", [Problem(str(path), "generate.allowed_outputs",
                        f"a file under {data_dir()} or a path", "no such file")])
    if path.suffix == ".json":
        found = load_json(path)
        found = found.get("labels") if isinstance(found, dict) else found
    else:
        found = [line.strip() for line in read_user_text(path, DataError).splitlines() if line.strip()]
    if not isinstance(found, list) or not found or not all(isinstance(x, str) and x for x in found):
        raise DataError(f"No allowed outputs in {path}", [Problem(str(path), "generate.allowed_outputs",
                        "a non-empty list of strings (JSON list, top-level 'labels', or one per line)", short(found))])
    return found


def load_inputs(path: Path, task: str) -> list[dict]:
    """Records to predict on: a JSON list, a data file (its eval split), or JSON lines. Each needs
    the task's input field (``prompt`` or ``input``); other fields are kept. Raises DataError."""
    key = TASKS[task].record_keys[0]
    if path.suffix == ".jsonl" and path.is_file():
        records = [record for _, _, record in iter_jsonl({"inputs": path})]
    else:
        data = load_json(path)
        records = data.get("eval") if isinstance(data, dict) else data
    if not isinstance(records, list) or not records:
        raise DataError(f"No records in {path}", [Problem(str(path), None, "a non-empty list of records, a data "
                        "file with an 'eval' split, or JSON lines", short(records))])
    problems = [Problem(str(path), f"[{i}].{key}", "a string", short(r.get(key)) if isinstance(r, dict) else short(r))
                for i, r in enumerate(records) if not isinstance(r, dict) or not isinstance(r.get(key), str)]
    if problems:
        raise DataError(f"Records without a {key} in {path}", problems[:MAX_PROBLEMS])
    return records


def check(task: str, data_name: str, need_train: bool = True, labels: tuple | None = None) -> dict[str, int]:
    """Validate a data file for a task; returns the record count of each split."""
    files = jsonl_files(data_name)
    if files is not None:
        mtimes = tuple(f.stat().st_mtime_ns for f in files.values())
        return dict(_check_jsonl(task, tuple(files.items()), need_train, labels, mtimes))
    path = data_path(data_name)
    stat = path.stat() if path.is_file() else None
    return dict(_check_cached(task, str(path), need_train, labels, stat.st_mtime_ns if stat else None))


def label_set(data: dict, spec_labels: list | tuple | None) -> list[str] | None:
    """The multi-label label set: the spec's, else the file's top-level "labels"."""
    labels = spec_labels or data.get("labels")
    return list(labels) if labels else None


def labels_of(data_name: str, spec_labels: list | tuple | None) -> list[str] | None:
    """``label_set`` by data name: JSON lines carry no top-level labels, so theirs come from the spec."""
    if spec_labels or jsonl_files(data_name) is not None:
        return list(spec_labels) if spec_labels else None
    return label_set(load_json(data_path(data_name)), None)


@lru_cache(maxsize=64)
def _check_cached(task: str, path_text: str, need_train: bool, labels: tuple | None, _mtime: int | None) -> tuple:
    path = Path(path_text)
    data = load_json(path)
    file = str(path)
    if not isinstance(data, dict):
        raise DataError(f"Malformed data file {path}",
                        [Problem(file, None, 'an object {"train": [...], "eval": [...]}', type(data).__name__)])
    problems: list[Problem] = []
    unknown = [k for k in data if k not in TOP_LEVEL]
    for key in unknown:
        problems.append(Problem(file, key, "only the keys " + ", ".join(TOP_LEVEL), f"unknown key '{key}'"))
    allowed = label_set(data, labels) if task == "classifier" else None
    counts = {}
    for split in SPLITS:
        records = data.get(split)
        if records is None:
            problems.append(Problem(file, split, "a list of records", "missing split"))
            continue
        if not isinstance(records, list):
            problems.append(Problem(file, split, "a list of records", type(records).__name__))
            continue
        if not records and (split == "eval" or need_train):
            problems.append(Problem(file, split, "at least one record", "an empty list"))
        problems += _check_chunk(task, file, [(f"{split}[{i}]", r) for i, r in enumerate(records)], allowed)
        counts[split] = len(records)
    _raise_if(problems, path)
    return tuple(counts.items())


def _check_chunk(task: str, file: str, items: list[tuple[str, object]], allowed: list[str] | None) -> list[Problem]:
    problems = _check_records(file, items, TASKS[task].record_keys)
    return problems + (_check_targets(file, items, allowed) if task == "classifier" else [])


def _raise_if(problems: list[Problem], path: Path) -> None:
    problems = list(dict.fromkeys(problems))
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(Problem(str(path), None, "valid records", f"{len(problems) - MAX_PROBLEMS} more problems"))
        raise DataError(f"Invalid data file {path}", shown)


def jsonl_files(data_name: str) -> dict[str, Path] | None:
    """JSON-lines data: ``name.jsonl`` (each record has a "split"), or ``name.train.jsonl`` and
    ``name.eval.jsonl``. None for a JSON data file."""
    path = data_path(data_name)
    if path.suffix == ".jsonl" and path.is_file():
        return {"all": path}
    stem = path.with_suffix("") if path.suffix == ".jsonl" else path
    files = {split: stem.with_name(f"{stem.name}.{split}.jsonl") for split in SPLITS}
    return files if all(f.is_file() for f in files.values()) else None


def iter_jsonl(files: dict[str, Path]) -> Iterator[tuple[str | None, str, object]]:
    """(split, where, record) for every line, read one at a time (the file is never whole in memory)."""
    for name, path in files.items():
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path} is not UTF-8 text", [not_utf8(str(path), number, raw[exc.start])]) from None
                except json.JSONDecodeError as exc:
                    raise DataError(f"Malformed JSON lines in {path}", [Problem(
                        str(path), f"line {number}", "one JSON object per line", exc.msg)]) from None
                split = name if name != "all" else record.get("split") if isinstance(record, dict) else None
                yield split, f"{path.name} line {number}", record


def read_split(data_name: str, split: str) -> list[dict]:
    """One split's records, from a JSON data file or JSON lines."""
    files = jsonl_files(data_name)
    if files is None:
        return load_json(data_path(data_name))[split]
    return [record for found, _, record in iter_jsonl(files) if found == split]


@lru_cache(maxsize=16)
def _check_jsonl(task: str, files: tuple[tuple[str, Path], ...], need_train: bool, labels: tuple | None,
                 _mtimes: tuple) -> tuple:
    """Stream the lines in chunks: memory stays flat whatever the file size."""
    files = dict(files)
    first = next(iter(files.values()))
    allowed = list(labels) if labels else None
    counts = {split: 0 for split in SPLITS}
    problems: list[Problem] = []
    chunk: list[tuple[str, object]] = []
    for split, where, record in iter_jsonl(files):
        if split not in SPLITS:
            problems.append(Problem(str(first), f"{where}.split", "train or eval", short(split)))
            continue
        counts[split] += 1
        chunk.append((where, record))
        if len(chunk) == 10_000:
            problems += _check_chunk(task, str(first), chunk, allowed)
            chunk = []
        if len(problems) > MAX_PROBLEMS:
            break
    problems += _check_chunk(task, str(first), chunk, allowed)
    for split in SPLITS:
        if not counts[split] and (split == "eval" or need_train):
            problems.append(Problem(str(first), split, "at least one record", "none"))
    _raise_if(problems, first)
    return tuple(counts.items())


def _check_records(file: str, items: list[tuple[str, object]], keys: tuple[str, ...]) -> list[Problem]:
    """``items``: (where, record) pairs, where is ``train[3]`` or ``line 12``."""
    problems = []
    for where, record in items:
        if not isinstance(record, dict):
            problems.append(Problem(file, where, "an object with " + ", ".join(keys), type(record).__name__))
            continue
        for key in keys:
            if key not in record:
                problems.append(Problem(file, f"{where}.{key}", "a string", "missing key",
                                        f"record keys: {', '.join(map(str, record)) or 'none'}"))
            elif not isinstance(record[key], str):
                problems.append(Problem(file, f"{where}.{key}", "a string", short(record[key])))
        if len(problems) > MAX_PROBLEMS:
            break
    return problems


def _check_targets(file: str, items: list[tuple[str, object]], allowed: list[str] | None) -> list[Problem]:
    """Classifier records: a numeric target in [0, 1], or (multi-label) labels from the label set."""
    problems = []
    for where, record in items:
        if not isinstance(record, dict):
            continue
        if "labels" in record:
            problems += _check_labels(file, where, record["labels"], allowed)
        elif "target" not in record:
            problems.append(Problem(file, f"{where}.target", "a number in [0, 1] (or a 'labels' list)",
                                    "missing key", f"record keys: {', '.join(map(str, record)) or 'none'}"))
        else:
            target = record["target"]
            if isinstance(target, bool) or not isinstance(target, (int, float)):
                problems.append(Problem(file, f"{where}.target", "a number in [0, 1]", short(target)))
            elif not 0 <= target <= 1:
                problems.append(Problem(file, f"{where}.target", "a number in [0, 1]", short(target)))
        if len(problems) > MAX_PROBLEMS:
            break
    return problems


def _check_labels(file: str, where: str, labels, allowed: list[str] | None) -> list[Problem]:
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        return [Problem(file, f"{where}.labels", "a list of label strings", short(labels))]
    if allowed is None:
        return [Problem(file, "labels", "a label set (classifier.labels in the spec, or 'labels' in the file)",
                        "none given")]
    missing = [x for x in labels if x not in allowed]
    if missing:
        return [Problem(file, f"{where}.labels", "labels from the label set: " + ", ".join(allowed[:20]),
                        ", ".join(repr(x) for x in missing))]
    return []
