"""Decoding controls: validated combinations, and transformers' own acceptance of what the spec
sends (decoding on a real model: tests/integration/test_decoding_jobs.py)."""

from __future__ import annotations

import pytest

from workflow.errors import SpecError
from workflow.launch.config import validate
from workflow.spec import GenerateSpec

BASE = {"model_init_name": "tiny-t5", "data_name": "demo.json"}


@pytest.mark.parametrize("generate, key", [
    ({"top_p": 0.9}, "generate.top_p"),                                        # nucleus without sampling
    ({"top_p": 1.5, "temperature": 0.7}, "generate.top_p"),                    # outside (0, 1]
    ({"penalty_alpha": 0.6, "top_k": 4, "temperature": 0.7}, "generate.penalty_alpha"),  # contrastive + sampling
    ({"penalty_alpha": 0.6}, "generate.penalty_alpha"),                        # contrastive without top_k
    ({"penalty_alpha": 0.6, "top_k": 4, "num_beams": 2}, "generate.penalty_alpha"),
    ({"top_k": 5}, "generate.top_k"),                                          # top_k without sampling
    ({"length_penalty": 2.0}, "generate.length_penalty"),                      # needs beams
    ({"n_samples": 4, "num_beams": 2}, "generate.n_samples"),                  # more sequences than beams
    ({"num_beams": 0}, "generate.num_beams"),
])
def test_bad_combinations_name_the_key(generate, key):
    with pytest.raises(SpecError) as caught:
        validate({**BASE, "generate": generate}, "x.yaml")
    assert any(p.key == key for p in caught.value.problems), str(caught.value)


@pytest.mark.parametrize("generate", [
    {}, {"num_beams": 4, "n_samples": 2, "length_penalty": 1.5, "no_repeat_ngram_size": 2},
    {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "n_samples": 4, "repetition_penalty": 1.2},
    {"temperature": 0.7, "num_beams": 2},
])
def test_what_the_spec_sends_transformers_accepts_strictly(generate):
    from transformers import GenerationConfig

    kwargs = GenerateSpec(**generate).generation_kwargs()
    config = GenerationConfig(**kwargs)
    config.validate(strict=True)  # raises on flags that would be ignored
    assert {key: getattr(config, key) for key in kwargs} == kwargs
