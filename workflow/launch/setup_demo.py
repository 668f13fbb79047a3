"""Build the offline demo: synthetic data files under mount/data (demo.json for seq2seq,
clf.json and multilabel.json for the classifier) and a tiny T5 under mount/models, so the
demo and the tests need no download. Given a data file of one's own, the tiny T5's tokenizer
is trained on its text instead."""

from __future__ import annotations

import os
from pathlib import Path

from workflow import data, demo
from workflow.jsonio import write_json
from workflow.paths import data_dir, models_dir


def own_records(data_name: str) -> dict | None:
    """The splits of an existing data file (JSON or JSON lines) that holds records, else None."""
    if data.jsonl_files(data_name) is None and not data.data_path(data_name).is_file():
        return None
    splits = {}
    for split in data.SPLITS:
        try:
            splits[split] = data.read_split(data_name, split)
        except KeyError:
            continue
    return splits if any(isinstance(r, list) and r for r in splits.values()) else None


def build(model_name: str = "tiny-t5", data_name: str = "demo.json", seed: int = 0) -> tuple[Path, Path]:
    """Write the demo data (if absent) and build the tiny model (if absent); returns both paths.
    When ``data_name`` is an existing file with records, the tokenizer learns its text (and
    the demo's words), and no demo data is written under that name."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' "Writing model shards" bar on the user's terminal
    records = own_records(data_name)
    data_path = data.data_path(data_name) if records else data_dir() / data_name
    extra = {"clf.json": demo.make_classifier_data(seed=seed), "multilabel.json": demo.make_multilabel_data(seed=seed),
             "taxonomy.json": demo.make_taxonomy_data(seed=seed)}
    if records is None:
        records = demo.make_seq2seq_data(seed=seed)
        extra = {data_name: records, **extra}
    for name, payload in extra.items():
        if not (data_dir() / name).is_file():
            write_json(data_dir() / name, payload)
    model_dir = models_dir() / model_name
    if not (model_dir / "config.json").is_file():
        demo.build_tiny_model(model_dir, demo.corpus_texts(records), seed=seed)
    return model_dir, data_path
