"""Nested mappings addressed by dotted key paths (``train.learning_rate``): the one helper for
reading, writing, merging and flattening them."""

from __future__ import annotations

import copy
from typing import Any

MISSING = object()


def get_path(tree: dict, dotted: str, default: Any = MISSING) -> Any:
    """The value at ``dotted``; ``default`` when a step is missing (KeyError without one)."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is MISSING:
                raise KeyError(dotted)
            return default
        node = node[part]
    return node


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set ``dotted`` in place, creating mappings on the way; ValueError when a step is not one."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{dotted}: '{part}' holds {node!r}, not a mapping")
    node[leaf] = value


def nest(flat: dict[str, Any]) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    tree: dict = {}
    for key, value in flat.items():
        set_path(tree, key, value)
    return tree


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def deep_merge(base: dict, over: dict) -> dict:
    """A new dict: ``over`` merged into ``base`` key by key. Neither input is modified; nested
    dicts along merged paths are new, other values are shared (specs never mutate them)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        elif isinstance(value, (dict, list)):
            out[key] = copy.deepcopy(value)
        else:
            out[key] = value
    return out


def format_value(value: Any) -> str:
    """A leaf value as people read it in point names and tables: 3e-4, 0.01, 1.235e5."""
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            mantissa, exp = f"{value:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return f"{value:.6g}"
    return str(value)
