"""The point hash's rules: every key of a hashed block is classified in a checked-in list
(tests/golden/hashed_fields.txt), so a new key cannot silently change the hash of every
finished point. The classification is read off the hash itself, not off the rule tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

from workflow.point_hash import HASH_EXCLUDED, HASH_OMITTED_AT, hashed_keys, hashed_parts
from workflow.spec import GenerateSpec, JobSpec, field_paths

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "hashed_fields.txt"
HEADER = """\
# Every key of a block that the point hash covers, with its rule (tests/unit/test_point_hash.py):
#   hashed        its value is part of every point's hash
#   excluded      where or how a point runs (workflow.point_hash.HASH_EXCLUDED)
#   omitted at V  added later; left out of the hash at V, its old behaviour (HASH_OMITTED_AT)
# A key that is new here changes the hash of every finished point at its default, so they re-run.
# Classify it in workflow/point_hash.py first; then rewrite this file with UPDATE_GOLDEN=1.
"""
MINIMAL = {"model_init_name": "m", "data_name": "d.json", "lora": {}}  # every optional block present


def present(payload: dict, path: str) -> bool:
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def classify(model: type[BaseModel]) -> list[str]:
    """Each key under a hashed top-level key, with the rule that the hash of a default spec shows."""
    spec = model.model_validate(MINIMAL)
    payload = {name: json.loads(text) for name, text in hashed_parts(spec).items()}
    lines = []
    for path in field_paths(model):
        top = path.split(".", 1)[0]
        if top not in hashed_keys(model):
            continue
        inside = HASH_EXCLUDED.get(top)
        if present(payload, path):
            rule = "hashed"
        elif path in HASH_OMITTED_AT:
            rule = f"omitted at {json.dumps(HASH_OMITTED_AT[path])}"
        elif isinstance(inside, dict) and path.split(".", 1)[1] in inside:
            rule = "excluded"
        else:
            rule = "missing from the hash, by no rule"
        lines.append(f"{path:<40} {rule}")
    return lines


def test_every_key_of_a_hashed_block_is_classified():
    text = HEADER + "\n".join(classify(JobSpec)) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), (
        "a key of a hashed block changed: classify it in workflow/point_hash.py (HASH_OMITTED_AT at "
        "the value that behaves as before, or hashed, re-running finished points), then UPDATE_GOLDEN=1")


def test_the_classification_catches_a_new_key():
    class Generate(GenerateSpec):
        new_knob: int = 3

    class Job(JobSpec):
        generate: Generate = Field(default_factory=Generate)

    lines = classify(Job)
    assert f"{'generate.new_knob':<40} hashed" in lines
    assert HEADER + "\n".join(lines) + "\n" != GOLDEN.read_text()


def test_keys_omitted_at_their_old_value_default_to_it():
    """At its default a key added later leaves the hash as it was: the "as before" value must be
    the default, and every rule must name a key that exists (a typo would omit nothing)."""
    paths = field_paths()
    for path, at in HASH_OMITTED_AT.items():
        assert path in paths, path
        assert paths[path].get_default(call_default_factory=True) == at, path
    for top, inside in HASH_EXCLUDED.items():
        assert top in JobSpec.model_fields, top
        if isinstance(inside, dict):
            assert all(f"{top}.{key}" in paths for key in inside), top


def test_an_omitted_key_away_from_its_old_value_changes_the_hash():
    base = JobSpec.model_validate(MINIMAL)
    beams = JobSpec.model_validate({**MINIMAL, "generate": {"num_beams": 2}})
    assert "num_beams" not in json.loads(hashed_parts(base)["generate"])
    assert json.loads(hashed_parts(beams)["generate"])["num_beams"] == 2
    assert base.point_hash() != beams.point_hash()
