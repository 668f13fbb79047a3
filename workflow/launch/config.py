"""Load a job spec: read YAML, follow ``base:``, apply ``key=value`` overrides, validate.

All problems are collected and raised together as one ``SpecError``.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from workflow import data as data_files, tree
from workflow.tree import deep_merge
from workflow.errors import Problem, SpecError, closest, read_user_text, short, suggest
from workflow.paths import PROJECT_ROOT, absolute, is_local_path
from workflow.spec import JobSpec, field_paths
from workflow.spec_errors import problems_from

CLI = "<command line>"
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping, turning every failure into a SpecError that names the file."""
    if not path.is_file():
        raise SpecError(f"Cannot read {path}", [Problem(str(path), None, "an existing YAML file", "no such file")])
    stat = path.stat()
    return copy.deepcopy(_read_yaml(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=32)
def _read_yaml(path_text: str, _inode: int, _mtime_ns: int, _size: int) -> dict:
    """Parsed once per file version (a sweep file is read to tell its kind, then to expand it),
    with libyaml's parser when PyYAML has it (10,000-value grids)."""
    path = Path(path_text)
    try:
        data = yaml.load(read_user_text(path, SpecError), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"Malformed YAML in {path}", [Problem(str(path), where, "valid YAML", problem)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"Malformed spec {path}",
                        [Problem(str(path), None, "a mapping of keys at the top level", type(data).__name__)])
    return data


def resolve_path(ref: str, relative_to: Path) -> Path:
    """A file named in a spec: relative to the naming file's folder, else to the project root."""
    candidate = Path(ref).expanduser()
    if candidate.is_absolute():
        return candidate
    for root in (relative_to, Path.cwd(), PROJECT_ROOT):
        if (root / candidate).is_file():
            return (root / candidate).resolve()
    return (PROJECT_ROOT / candidate).resolve()


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a spec file and merge it over its ``base:`` chain (no validation yet)."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in _seen + (path,))
        raise SpecError("Spec inherits from itself", [Problem(str(path), "base", "no cycle", chain)])
    data = read_yaml(path)
    ref = data.pop("base", None)
    if ref is None:
        return data
    if not isinstance(ref, str):
        raise SpecError(f"Invalid spec {path}", [Problem(str(path), "base", "a file path string", short(ref))])
    base_path = resolve_path(ref, path.parent)
    if not base_path.is_file():
        raise SpecError(f"Invalid spec {path}", [Problem(str(path), "base", "an existing spec file", ref)])
    return deep_merge(load_raw(base_path, _seen + (path,)), data)


def parse_overrides(items: Iterable[str], source: str = CLI) -> dict:
    """``["train.learning_rate=1e-3", ...]`` -> nested dict; values are parsed as YAML scalars."""
    nested: dict = {}
    problems = []
    known = field_paths()
    for item in items:
        text = str(item)
        if "=" not in text:
            problems.append(Problem(source, text, "an override of the form key.path=value", short(text)))
            continue
        key, raw = text.split("=", 1)
        key = key.strip().lstrip("-")
        problem = check_key_path(key, known, source, key)
        if problem:
            problems.append(problem)
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        set_path(nested, key, value)
    if problems:
        raise SpecError("Invalid overrides", problems)
    return nested


def check_key_path(key: str, known: dict, file: str, shown_key: str) -> Problem | None:
    """None when ``key`` names a spec field; otherwise a Problem with a suggestion."""
    if key in known:
        return None
    return Problem(file, shown_key, "a known spec key", f"unknown key '{key}'", key_hint(key, known))


def key_hint(key: str, known) -> str | None:
    """What an unknown key path most likely meant: the one key of that name in another block; else a
    key of the same block (``train.lr``: ``train.learning_rate``, by its initials too); else the
    closest key anywhere."""
    leaf_matches = [p for p in known if p.rsplit(".", 1)[-1] == key]
    if len(leaf_matches) == 1:
        return f"did you mean '{leaf_matches[0]}'?"
    block, _, leaf = key.rpartition(".")
    siblings = {p.rsplit(".", 1)[-1]: p for p in known if p.rpartition(".")[0] == block} if block else {}
    by_initials = [p for name, p in siblings.items() if "".join(w[:1] for w in name.split("_")) == leaf]
    close = closest(leaf, siblings) if siblings else None
    if close or len(by_initials) == 1:
        return f"did you mean '{siblings[close] if close else by_initials[0]}'?"
    if siblings:
        return f"the keys under {block}: " + ", ".join(sorted(siblings))
    return suggest(key, known)


def set_path(nested: dict, dotted: str, value: Any) -> None:
    try:
        tree.set_path(nested, dotted, value)
    except ValueError as exc:
        raise SpecError("Invalid override", [Problem(CLI, dotted, "a path through mappings", str(exc))]) from None


def validate(raw: dict, file: str, cli: dict | None = None) -> JobSpec:
    """Validate a merged spec dict; every problem is reported at once, in ``file``, or on the
    command line where an override (``cli``, nested) set the key."""
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        given = set(tree.flatten(cli)) if cli else set()
        problems = [replace(p, file=CLI) if p.key and any(p.key == k or p.key.startswith(k + ".") for k in given)
                    else p for p in problems_from(exc, file)]
        raise SpecError(f"Invalid job spec {file}", problems) from None


def load_spec(path: str | Path, overrides: Iterable[str] = (), extra: dict | None = None) -> JobSpec:
    """The one way to get a validated JobSpec from a file plus overrides."""
    path = Path(path)
    raw = load_raw(path)
    if extra:
        raw = deep_merge(raw, extra)
    cli = parse_overrides(overrides)
    return validate(deep_merge(raw, cli), str(path), cli)


def absolute_paths(data: dict) -> dict:
    """A point's spec data (``sweep_blocks.shared_dump``) as its job carries it: each path made absolute, as
    it was found here, against this process's working directory (where the user ran the command).
    Jobs run from their code snapshot's folder, so a relative path would name another file there,
    and a relative model folder a hub id. The point hash is taken before, from the values as
    written. Blocks that points share are copied when changed, never edited."""
    out = dict(data)
    source = out.get("model_init_path")
    if source and is_local_path(source):
        out["model_init_path"] = absolute(source)
    if out.get("output_dir"):
        out["output_dir"] = absolute(out["output_dir"])
    generate = out.get("generate") or {}
    if isinstance(generate.get("allowed_outputs"), str):  # a file: here, else under mount/data
        out["generate"] = {**generate, "allowed_outputs": str(data_files.find(generate["allowed_outputs"]))}
    return out
