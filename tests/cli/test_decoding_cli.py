"""Decoding settings the command line refuses at validation."""

from __future__ import annotations

import pytest

from helpers import run_cli

BASE = {"model_init_name": "tiny-t5", "data_name": "demo.json"}


@pytest.mark.parametrize("generate, needle", [
    ({"allowed_outputs": "no_such_taxonomy.txt"}, "no such file"),
    ({"allowed_outputs": []}, "non-empty list"),
    ({"allowed_outputs": ["a", "b"], "temperature": 0.7}, "beam search or greedy"),
])
def test_bad_allowed_outputs_fail_at_validation(env, tmp_path, generate, needle):
    import yaml

    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({**BASE, "generate": generate}))
    result = run_cli("validate", str(path), env=env)
    assert result.returncode != 0 and "generate.allowed_outputs" in result.stderr and needle in result.stderr, \
        result.stderr
    assert not (tmp_path / "runs").exists()
