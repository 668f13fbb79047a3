"""Decoding controls: validated combinations, transformers' own acceptance of what the spec
sends, contrastive search (ours: transformers 5 loads it from the hub)."""

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


@pytest.fixture(scope="module")
def tiny(mount):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    path = str(mount / "models/tiny-t5")
    return AutoModelForSeq2SeqLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


PROMPTS = ["translate: red big dog", "translate: blue small cat on a mat"]


def test_contrastive_search_without_penalty_is_greedy(tiny):
    from workflow.node.decoding import generate

    model, tokenizer = tiny
    greedy = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12), 64)
    nearly = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12, penalty_alpha=1e-9, top_k=4), 64)
    assert nearly == greedy


def test_contrastive_search_penalises_repetition(tiny):
    """The untrained tiny T5 repeats one word under greedy decoding; the penalty breaks that."""
    from workflow.node.decoding import generate

    model, tokenizer = tiny
    greedy = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12), 64)
    contrastive = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=12, penalty_alpha=0.8, top_k=8), 64)

    def distinct(outputs):
        words = [w for out in outputs for w in out[0].split()]
        return len(set(words)) / max(len(words), 1)

    assert distinct(contrastive) > distinct(greedy), (greedy, contrastive)


# --- constrained generation over a label set ----------------------------------------------------

def test_allowed_outputs_keep_every_output_inside_the_taxonomy(tiny):
    """The untrained tiny T5 emits words outside the taxonomy; constrained, it cannot."""
    from workflow.demo import taxonomy
    from workflow.node.decoding import generate

    model, tokenizer = tiny
    labels = taxonomy()
    free = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=16), 64)
    assert not any(out[0] in labels for out in free), free
    constrained = generate(model, tokenizer, PROMPTS, GenerateSpec(max_new_tokens=24, allowed_outputs=labels,
                                                                  num_beams=8, n_samples=4), 64)
    assert all(len(set(outs)) == 4 and set(outs) <= set(labels) for outs in constrained), constrained
