"""The DeepSpeed config that a spec's deepspeed block becomes, pinned by golden files."""

from __future__ import annotations

import json
import os

import pytest

from helpers import ROOT
from workflow.node.zero import deepspeed_config
from workflow.spec import DeepSpeedSpec

GOLDEN = ROOT / "tests/golden"


@pytest.mark.parametrize("stage, offload", [(2, False), (3, False), (3, True)])
def test_deepspeed_config_matches_golden(stage, offload):
    ds = DeepSpeedSpec(enabled=True, stage=stage, offload_optimizer="cpu" if offload else "none",
                       offload_param="cpu" if offload else "none")
    golden = GOLDEN / f"ds_zero{stage}{'_offload' if offload else ''}.json"
    text = json.dumps(deepspeed_config(ds), indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
