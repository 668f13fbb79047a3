"""Build a tiny T5 (tokenizer + randomly initialised model) offline, for demos and tests.

The tokenizer is a sentencepiece unigram model trained on the given texts and then
handed to ``T5Tokenizer`` as a list of ``(piece, score)`` pairs. (Passing
``vocab_file=`` is silently ignored by transformers 5.x, which leaves a ~100-token
tokenizer that maps every word to ``<unk>``.) Heavy imports stay inside the functions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
EXTRA_IDS = 100
# Words that must be single tokens: a classifier reads the logits of "yes" and "no".
REQUIRED_WORDS = ("yes", "no")
MODEL_SIZES = dict(d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                   num_heads=2, d_kv=32)


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

    Texts should contain the words "yes" and "no" so they become single tokens.
    Returns ``out_dir``, loadable with ``AutoTokenizer`` / ``AutoModelForSeq2SeqLM``.
    """
    out_dir = Path(out_dir)
    tokenizer = make_tokenizer(train_pieces(texts, vocab_size))
    check_tokenizer(tokenizer, texts)
    model = make_model(len(tokenizer), seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
