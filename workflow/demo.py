"""Synthetic demo data: a word-by-word "translation" task a tiny T5 learns from scratch.

Each prompt is ``"translate: <colour> <size> <animal>"`` and its completion is the
word-by-word translation into a made-up target language, e.g.
``"translate: red big dog"`` -> ``"rouge grand chien"``. Eval prompts are disjoint
from train prompts, so exact match on eval measures generalisation to unseen
combinations of known words. Standard library only.
"""

from __future__ import annotations

import random
import string

PREFIX = "translate: "
# Source word -> target word, one table per slot of the sentence.
LEXICON = (
    {"red": "rouge", "blue": "bleu", "green": "vert", "black": "noir",
     "white": "blanc", "pink": "rose", "gray": "gris", "gold": "dore"},
    {"big": "grand", "small": "petit", "old": "vieux", "young": "jeune",
     "fast": "rapide", "slow": "lent", "happy": "content", "sad": "triste"},
    {"dog": "chien", "cat": "chat", "horse": "cheval", "bird": "oiseau",
     "fish": "poisson", "mouse": "souris", "cow": "vache", "wolf": "loup"},
)
# Classifier demos: a colour decides the binary target; colour and animal decide the labels.
POSITIVE_COLOURS = ("red", "blue", "green", "black")
WARM = ("red", "pink", "gold", "white")
PETS = ("dog", "cat", "bird", "fish")
LABELS = ("warm", "cool", "pet", "wild")
# Extra words the tokenizer must know as whole pieces (a classifier scores them).
EXTRA_WORDS = ("yes", "no") + LABELS


def _record(words: tuple[str, ...]) -> dict:
    """One prompt/completion pair for a tuple of source words."""
    target = [table[word] for table, word in zip(LEXICON, words)]
    return {"prompt": PREFIX + " ".join(words), "completion": " ".join(target)}


def make_seq2seq_data(seed: int = 0, n_train: int = 400, n_eval: int = 100) -> dict:
    """Return ``{"train": [...], "eval": [...]}`` with disjoint prompts.

    Records are ``{"prompt": str, "completion": str}``. There are 512 distinct
    prompts in all, so ``n_train + n_eval`` must not exceed 512.
    """
    combos = [(a, b, c) for a in LEXICON[0] for b in LEXICON[1] for c in LEXICON[2]]
    if n_train < 0 or n_eval < 0 or n_train + n_eval > len(combos):
        raise ValueError(f"n_train + n_eval must be between 0 and {len(combos)}")
    random.Random(seed).shuffle(combos)
    records = [_record(words) for words in combos[:n_train + n_eval]]
    return {"train": records[:n_train], "eval": records[n_train:]}


def _split(records: list[dict], seed: int, n_train: int) -> dict:
    random.Random(seed).shuffle(records)
    return {"train": records[:n_train], "eval": records[n_train:]}


def make_classifier_data(seed: int = 0, n_train: int = 400) -> dict:
    """Binary and separable: target 1 when the colour is one of POSITIVE_COLOURS."""
    combos = [(a, b, c) for a in LEXICON[0] for b in LEXICON[1] for c in LEXICON[2]]
    records = [{"input": " ".join(w), "target": float(w[0] in POSITIVE_COLOURS)} for w in combos]
    return _split(records, seed, n_train)


def make_multilabel_data(seed: int = 0, n_train: int = 400) -> dict:
    """Two labels per input from {warm, cool} x {pet, wild}; the label set rides in the file."""
    combos = [(a, b, c) for a in LEXICON[0] for b in LEXICON[1] for c in LEXICON[2]]
    records = [{"input": " ".join(w), "labels": ["warm" if w[0] in WARM else "cool",
                                                 "pet" if w[2] in PETS else "wild"]} for w in combos]
    return {"labels": list(LABELS), **_split(records, seed, n_train)}


def taxonomy() -> list[str]:
    """A two-level taxonomy over the demo words: internal nodes ("animal > pet") and leaves
    ("animal > pet > dog"), as a product catalogue's category paths are."""
    nodes = []
    for root, groups in (("animal", {"pet": PETS, "wild": [w for w in LEXICON[2] if w not in PETS]}),
                         ("colour", {"warm": WARM, "cool": [w for w in LEXICON[0] if w not in WARM]})):
        nodes.append(root)
        for group, words in groups.items():
            nodes += [f"{root} > {group}"] + [f"{root} > {group} > {w}" for w in words]
    return nodes


def make_taxonomy_data(seed: int = 0, n_train: int = 400) -> dict:
    """Queries -> their categories (two leaves and their parents), for generation constrained to
    the taxonomy. Training has one record per (query, category); eval records carry every
    category in "labels", and the taxonomy rides in the file's top-level "labels"."""
    combos = [(a, b, c) for a in LEXICON[0] for b in LEXICON[1] for c in LEXICON[2]]
    random.Random(seed).shuffle(combos)
    records = []
    for colour, size, animal in combos:
        group = "pet" if animal in PETS else "wild"
        shade = "warm" if colour in WARM else "cool"
        labels = [f"animal > {group} > {animal}", f"colour > {shade} > {colour}", f"animal > {group}",
                  f"colour > {shade}"]
        records.append({"prompt": f"categories: {colour} {size} {animal}", "labels": labels})
    train = [{"prompt": r["prompt"], "completion": label} for r in records[:n_train] for label in r["labels"]]
    test = [{**r, "completion": r["labels"][0]} for r in records[n_train:]]
    return {"labels": taxonomy(), "train": train, "eval": test}


def corpus_texts(data: dict) -> list[str]:
    """Texts to train the tokenizer on: every prompt and completion, plus extra words."""
    texts = [rec[key] for split in ("train", "eval") for rec in data[split]
             for key in ("prompt", "completion")]
    # Every vocabulary word on its own line, so each one has a chance to be a piece.
    texts += [word for table in LEXICON for pair in table.items() for word in pair]
    texts += [f"{word} {word}" for word in EXTRA_WORDS] * 20
    # Every printable ASCII character, so other text never tokenizes to <unk>.
    texts.append(" ".join(string.ascii_letters + string.digits + string.punctuation))
    return texts
