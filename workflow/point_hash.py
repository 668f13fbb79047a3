"""The point hash: which keys of a spec decide what a point computes, and how they are hashed.

A point's hash is its id: a sweep submitted again finds its finished points by it. So the rules
here are a compatibility promise. A key that says where or how a point runs is excluded
(``HASH_EXCLUDED``): moving a sweep to another backend re-runs nothing. A key added to a hashed
block after points were first hashed is left out at the value that means "as before"
(``HASH_OMITTED_AT``): upgrading the tool re-runs nothing. Every other key is hashed, and
``tests/golden/hashed_fields.txt`` lists each key with its rule, so a new key in a hashed block
fails a test until it is classified here.

The rules work on any pydantic model (the schema, ``workflow.spec``, imports this module).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from workflow.tree import MISSING

# Keys that describe where or how a point runs, not what it computes: a top-level key (True), or
# keys inside a top-level block (a mapping of them).
HASH_EXCLUDED = {"backend": True, "tracking": True, "local": True, "slurm": True, "ctl": True, "run_name": True,
                 "tokenizer_coverage": True, "retry": True, "speed": True, "search": {"storage": True, "startup": True},
                 "resources": {"timeout_min": True, "mem_gb": True, "cpus_per_task": True},
                 "deepspeed": {"reduce_bucket_size": True, "allgather_bucket_size": True,
                               "stage3_prefetch_bucket_size": True, "stage3_param_persistence_threshold": True,
                               "stage3_max_live_parameters": True}}
# Keys added after points were first hashed, with the value that means "as before". At that value
# a key is left out of the hash, so upgrading the tool does not re-run finished points. Each is a
# key of a top-level block ("block.key").
HASH_OMITTED_AT = {"lora.quantize": "none", "generate.num_beams": 1, "generate.top_k": None, "generate.top_p": None,
                   "generate.repetition_penalty": None, "generate.no_repeat_ngram_size": 0,
                   "generate.length_penalty": 1.0, "generate.penalty_alpha": None, "generate.allowed_outputs": None,
                   "train.lr_scheduler": "linear", "train.num_epochs": None, "train.label_smoothing": 0.0,
                   "train.load_best_at_end": False, "train.best_metric": "eval_loss", "train.save": True}

# Top-level keys added later, left out of the hash at the value that means "as before".
TOP_OMITTED_AT = {"search": None}
_OMITTED_BY_BLOCK: dict[str, list[tuple[str, Any]]] = {}  # HASH_OMITTED_AT by block
for _dotted, _at in HASH_OMITTED_AT.items():
    _block, _leaf = _dotted.split(".", 1)
    _OMITTED_BY_BLOCK.setdefault(_block, []).append((_leaf, _at))
_HASH_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # the point hash's JSON, made once


@lru_cache(maxsize=None)
def hashed_keys(model: type[BaseModel]) -> tuple[str, ...]:
    """The top-level keys of ``model`` that take part in the hash, sorted."""
    return tuple(sorted(k for k in model.model_fields if HASH_EXCLUDED.get(k) is not True))


def hash_text(name: str, value: Any) -> str:
    """One top-level key's part of the point hash: its value as sorted, compact JSON, less the
    keys of ``HASH_EXCLUDED`` and those of ``HASH_OMITTED_AT`` at their "as before" value."""
    if isinstance(value, BaseModel):
        excluded = HASH_EXCLUDED.get(name)
        value = value.model_dump(mode="json", exclude=excluded if isinstance(excluded, dict) else None)
        for leaf, at in _OMITTED_BY_BLOCK.get(name, ()):
            if value.get(leaf, MISSING) == at:
                del value[leaf]
    return _HASH_JSON.encode(value)


def hashed_parts(spec: BaseModel, known: dict[int, str] | None = None) -> dict[str, str]:
    """Each hashed top-level key's ``hash_text``. ``known`` maps ``id(block)`` to its text for
    blocks that many points share unchanged (a sweep's base blocks), so each is serialised once."""
    known = known or {}
    parts = {}
    for name in hashed_keys(type(spec)):
        value = getattr(spec, name)
        if name in TOP_OMITTED_AT and value == TOP_OMITTED_AT[name]:
            continue
        text = known.get(id(value))
        parts[name] = hash_text(name, value) if text is None else text
    return parts


def point_hash(spec: BaseModel, known: dict[int, str] | None = None) -> str:
    """Stable id of a point: sha256 over its hashed keys as sorted, compact JSON (12 hex digits)."""
    body = ",".join(f'"{name}":{text}' for name, text in hashed_parts(spec, known).items())
    return hashlib.sha256(("{" + body + "}").encode()).hexdigest()[:12]
