"""How a sweep's points share the blocks of its base spec, by object identity.

Most points of a sweep change a key or two; their other blocks are the base's. ``BaseBlocks``
validates the base once, block by block, and hands each point the base's block objects for the
blocks its overrides leave alone. Work done per block is then done once per block object, keyed
by ``id(block)``: its point-hash text (``BaseBlocks.hash_texts``, given to ``JobSpec.point_hash``)
and its dump into job.json (``shared_dump``). The blocks that the spec-wide checks may set
(``JobSpec.SET_BY_CHECKS``) are never shared: each point gets its own copy. Shared blocks are
read, never changed: code that changes a block of one point replaces it
(``model_copy(update=...)``), as the plan's ZeRO choice does.
"""

from __future__ import annotations

from workflow.point_hash import hash_text
from workflow.spec import JobSpec, block_type
from workflow.tree import deep_merge

BLOCK_FIELDS = tuple(name for name, info in JobSpec.model_fields.items() if block_type(info.annotation))
SHARED_BLOCK_FIELDS = tuple(name for name in BLOCK_FIELDS if name not in JobSpec.SET_BY_CHECKS)
FIELD_ORDER = tuple(JobSpec.model_fields)


class BaseBlocks:
    """A sweep's base spec, validated block by block once, so that each point validates only
    the blocks its overrides touch. The others are the base's blocks as their own validation
    left them, before the spec-wide checks: shared by the points, except the blocks those checks
    may set, which each point gets as a copy; the checks then run on each point's whole spec, as
    on its raw dict. Each point's spec, and each error, is the one that validating the merged
    dict gives."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.blocks = {}  # the base's blocks, and the default of each block it leaves out
        for name, info in JobSpec.model_fields.items():
            kind = block_type(info.annotation)
            if kind is None:
                continue
            if isinstance(raw.get(name), dict):
                self.blocks[name] = kind.model_validate(raw[name])  # the base spec is valid: this cannot fail
            elif name not in raw and info.default_factory is not None:
                self.blocks[name] = info.default_factory()
        # the point hash's text of each shared block, serialised once (the blocks stay alive here)
        self.hash_texts = {id(block): hash_text(name, block) for name, block in self.blocks.items()
                           if name not in JobSpec.SET_BY_CHECKS}

    def validate(self, nested: dict, cli: dict) -> JobSpec:
        """The point's spec: ``deep_merge(deep_merge(base, nested), cli)``, validated."""
        raw = {}
        for name in {**self.blocks, **self.raw, **nested}:
            if name in nested:  # what the raw merge gives for this key (the command line wins)
                merged = {name: self.raw[name]} if name in self.raw else {}
                merged = deep_merge(merged, {name: nested[name]})
                if name in cli:
                    merged = deep_merge(merged, {name: cli[name]})
                raw[name] = merged[name]
            elif name in self.blocks:
                block = self.blocks[name]
                raw[name] = block.model_copy() if name in JobSpec.SET_BY_CHECKS else block
            else:
                raw[name] = self.raw[name]
        return JobSpec.model_validate(raw)


def shared_dump(spec: JobSpec, dumped: dict[int, dict]) -> dict:
    """``spec.model_dump(mode="json")``, each block that many points share unchanged dumped
    once: ``dumped`` maps ``id(block)`` to its dump, and is filled here. The points' data then
    share those dicts: read them, never change them."""
    blocks = [(name, getattr(spec, name)) for name in SHARED_BLOCK_FIELDS]
    known = {name: dumped[id(block)] for name, block in blocks if id(block) in dumped}
    data = spec.model_dump(mode="json", exclude=set(known) if known else None)
    if len(known) < len(blocks):
        dumped.update((id(block), data[name]) for name, block in blocks if name not in known and block is not None)
    if not known:
        return data
    return {name: known[name] if name in known else data[name] for name in FIELD_ORDER}
