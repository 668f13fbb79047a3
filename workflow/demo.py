"""The offline demo: synthetic data, and a tiny T5 (tokenizer + randomly initialised model)
built from it, for demos, tests and benchmarks, with no download.

The data is a word-by-word "translation" task a tiny T5 learns from scratch. Each prompt is
``"translate: <colour> <size> <animal>"`` and its completion is the word-by-word translation
into a made-up target language, e.g. ``"translate: red big dog"`` -> ``"rouge grand chien"``.
Eval prompts are disjoint from train prompts, so exact match on eval measures generalisation to
unseen combinations of known words. The classifier, multi-label and taxonomy files reuse the words.

The tokenizer is a sentencepiece unigram model trained on the given texts and then handed to
``T5Tokenizer`` as a list of ``(piece, score)`` pairs. (Passing ``vocab_file=`` is silently
ignored by transformers 5.x, which leaves a ~100-token tokenizer that maps every word to
``<unk>``.) The data needs the standard library only; the model's heavy imports stay inside
its functions.
"""

from __future__ import annotations

import random
import string
import tempfile
from pathlib import Path

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
# The tiny model: T5's special ids, its sentinels and its sizes.
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
EXTRA_IDS = 100
CHAR_MARGIN = 64  # pieces beyond the distinct characters of a corpus (its words and specials)
# Words that must be single tokens: a classifier reads the logits of "yes" and "no".
REQUIRED_WORDS = ("yes", "no")
MODEL_SIZES = dict(d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                   num_heads=2, d_kv=32)
# Extra words the tokenizer must know as whole pieces (a classifier scores them).
EXTRA_WORDS = REQUIRED_WORDS + LABELS


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


TEXT_FIELDS = ("prompt", "completion", "input")  # the text of a seq2seq or classifier record


def corpus_texts(data: dict) -> list[str]:
    """Texts to train the tokenizer on: the text of every record (a prompt and completion, or a
    classifier's input) of ``{"train": [...], "eval": [...]}``, plus the demo's words and every
    printable ASCII character."""
    texts = [rec[key] for split in ("train", "eval") for rec in data.get(split) or ()
             if isinstance(rec, dict) for key in TEXT_FIELDS if isinstance(rec.get(key), str)]
    # Every vocabulary word on its own line, so each one has a chance to be a piece.
    texts += [word for table in LEXICON for pair in table.items() for word in pair]
    texts += [f"{word} {word}" for word in EXTRA_WORDS] * 20
    # Every printable ASCII character, so other text never tokenizes to <unk>.
    texts.append(" ".join(string.ascii_letters + string.digits + string.punctuation))
    return texts



def train_pieces(texts: list[str], vocab_size: int) -> list[tuple[str, float]]:
    """Train a sentencepiece unigram model on ``texts``; return its ``(piece, score)`` list.

    Ids follow T5: ``<pad>``=0, ``</s>``=1, ``<unk>``=2, no BOS. ``vocab_size`` is an
    upper bound (``hard_vocab_limit=False``), so a small corpus does not fail.
    Single-threaded unigram training is deterministic, so no seed is needed.
    """
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "sp"), vocab_size=vocab_size,
            model_type="unigram", pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
            hard_vocab_limit=False, normalization_rule_name="identity",
            character_coverage=1.0, seed_sentencepiece_size=100000,
            num_threads=1, minloglevel=2)
        proc = spm.SentencePieceProcessor(model_file=str(Path(tmp) / "sp.model"))
        return [(proc.id_to_piece(i), proc.get_score(i)) for i in range(proc.get_piece_size())]


def make_tokenizer(pieces: list[tuple[str, float]]):
    """A ``T5Tokenizer`` built from sentencepiece pieces plus T5's sentinel tokens.

    Sentinels go at the end in reverse order, as in T5 (``<extra_id_0>`` is the last id).
    """
    from transformers import T5Tokenizer

    sentinels = [(f"<extra_id_{i}>", 0.0) for i in range(EXTRA_IDS - 1, -1, -1)]
    return T5Tokenizer(vocab=list(pieces) + sentinels, extra_ids=EXTRA_IDS)


def check_tokenizer(tokenizer, texts: list[str]) -> None:
    """Raise ``ValueError`` if any text tokenizes to ``<unk>`` or a required word is not one token."""
    for text in texts:
        if UNK_ID in tokenizer(text)["input_ids"]:
            raise ValueError(f"tokenizer maps part of {text!r} to <unk>")
    for word in REQUIRED_WORDS:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{word!r} is not a single token: {tokenizer.convert_ids_to_tokens(ids)}")


def make_model(vocab_size: int, seed: int = 0):
    """A randomly initialised tiny ``T5ForConditionalGeneration`` (seeded)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
                      decoder_start_token_id=PAD_ID, tie_word_embeddings=True,
                      dropout_rate=0.0, **MODEL_SIZES)
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config)


def build_tiny_model(out_dir: Path, texts: list[str], vocab_size: int = 256,
                     seed: int = 0) -> Path:
    """Train a tokenizer on ``texts``, build a tiny T5 on it, and save both to ``out_dir``.
    ``vocab_size`` grows past the corpus's distinct characters, so none maps to ``<unk>``.

    Texts should contain the words "yes" and "no" so they become single tokens.
    Returns ``out_dir``, loadable with ``AutoTokenizer`` / ``AutoModelForSeq2SeqLM``.
    """
    out_dir = Path(out_dir)
    # Every character must be a piece (no <unk>): a text with many distinct ones needs more.
    vocab_size = max(vocab_size, len(set("".join(texts))) + CHAR_MARGIN)
    tokenizer = make_tokenizer(train_pieces(texts, vocab_size))
    check_tokenizer(tokenizer, texts)
    model = make_model(len(tokenizer), seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
