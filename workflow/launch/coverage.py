"""Tokenizer coverage: how much of a sample of the data the job's tokenizer maps to ``<unk>``.

T5's sentencepiece vocabulary has no ``{``, ``}``, ``<``, newlines or most non-Latin scripts, so
such text trains as ``<unk>`` without a word said. The check tokenizes the first records of each
split (``tokenizer_coverage.sample``) with a light library only: ``tokenizers`` on
``tokenizer.json``, else ``sentencepiece`` on ``spiece.model`` (both imported here, when the
check runs). A word is unknown when any of its tokens is ``<unk>``; a character when it alone
tokenizes to ``<unk>``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workflow import data
from workflow.errors import Problem
from workflow.launch import hub
from workflow.paths import is_local_path

EXAMPLES = 3  # unknown words quoted in a message
Encode = Callable[[list[str]], list[bool]]  # texts -> whether each holds an <unk>


@dataclass(frozen=True)
class Coverage:
    """One split's sample: words and characters seen, and those that map to ``<unk>``."""
    where: str  # "mount/data/x.json:train"
    words: int
    unk_words: int
    chars: int
    unk_chars: int
    examples: tuple[str, ...]

    def share(self) -> tuple[float, float]:
        """The unknown share of words and of characters."""
        return self.unk_words / max(self.words, 1), self.unk_chars / max(self.chars, 1)

    def message(self) -> str:
        words, chars = self.share()
        shown = ", ".join(repr(w) for w in self.examples)
        return (f"{100 * words:.1f}% of sampled words in {self.where} map to <unk> ({self.unk_words} of "
                f"{self.words}; {100 * chars:.1f}% of characters), e.g. {shown}")


def tokenizer_folder(source: str) -> Path | None:
    """The folder holding the model's tokenizer files: a local folder, or a hub id's cached snapshot."""
    if is_local_path(source) or Path(source).is_dir():
        return Path(source)
    if not hub.HUB_ID.match(source) or not hub.cached(source):
        return None
    folder = hub.cache_dir() / ("models--" + source.replace("/", "--"))
    return folder / "snapshots" / (folder / "refs" / "main").read_text().strip()


def load_encoder(folder: Path) -> Encode | None:
    """An ``Encode`` for the tokenizer in ``folder``, or None when it has neither file."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        unk = tok.token_to_id("<unk>")
        return lambda texts: [unk in e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    if (folder / "spiece.model").is_file():
        import sentencepiece as spm

        proc = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
        unk = proc.unk_id()
        return lambda texts: [unk in ids for ids in proc.encode(texts)]
    return None


def measure(encode: Encode, texts: list[str], where: str) -> Coverage:
    """Tokenize each distinct word and character of ``texts`` once; count their occurrences."""
    words = Counter(word for text in texts for word in text.split())
    chars = Counter(char for word in words.elements() for char in word)
    unk_words = [w for w, bad in zip(words, encode(list(words))) if bad]
    unk_chars = {c for c, bad in zip(chars, encode(list(chars))) if bad}
    examples = sorted(unk_words, key=lambda w: -words[w])[:EXAMPLES]
    return Coverage(where, sum(words.values()), sum(words[w] for w in unk_words),
                    sum(chars.values()), sum(chars[c] for c in unk_chars), tuple(examples))


def where(data_name: str, split: str) -> str:
    """The data file and split, as ``mount/data/x.json:train`` (relative to here when under it)."""
    files = data.jsonl_files(data_name)
    path = str(files[split] if files and split in files else data.data_path(data_name))
    relative = os.path.relpath(path)
    return f"{path if relative.startswith('..') else relative}:{split}"


def sample_texts(records: list, fields: tuple[str, ...], size: int) -> list[str]:
    """The text fields of the first ``size`` records (the classifier's input, seq2seq's pair)."""
    return [rec[key] for rec in records[:size] if isinstance(rec, dict)
            for key in fields if isinstance(rec.get(key), str)]


def check_spec(spec, file: str) -> tuple[list[str], list[Problem]]:
    """One point's data against its tokenizer: (warnings, problems), problems only when
    ``tokenizer_coverage.error`` is set. A model without a tokenizer file here is not checked."""
    folder = tokenizer_folder(spec.model_source)
    encode = load_encoder(folder) if folder else None
    opts = spec.tokenizer_coverage
    if encode is None or opts.sample == 0:
        return [], []
    fields = ("input",) if spec.task == "classifier" else ("prompt", "completion")
    warnings, problems = [], []
    for split in data.SPLITS:
        try:
            records = data.read_split(spec.data_name, split)
        except KeyError:
            continue
        found = measure(encode, sample_texts(records, fields, opts.sample), where(spec.data_name, split))
        if max(found.share()) <= opts.max_unk:
            continue
        if opts.error:
            problems.append(Problem(file, "tokenizer_coverage.max_unk", f"at most {100 * opts.max_unk:g}% of "
                                    f"sampled words and characters mapping to <unk>", found.message(),
                                    "clean the data, or use a model whose vocabulary covers it"))
        else:
            warnings.append(found.message())
    return warnings, problems


def check_sweep(sweep, problems: list[Problem]) -> tuple[str, ...]:
    """Each distinct (model, data, task, options) of the sweep once; appends error problems to
    ``problems`` and returns the warnings. Skipped when the sweep has problems already."""
    if problems:
        return ()
    warnings: list[str] = []
    seen = set()
    for point in sweep.points:
        spec = point.spec
        key = (spec.model_source, spec.data_name, spec.task, repr(spec.tokenizer_coverage))
        if key in seen:
            continue
        seen.add(key)
        found, errors = check_spec(spec, sweep.file)
        warnings += [w for w in found if w not in warnings]
        problems += [p for p in errors if p not in problems]
    return tuple(warnings)
