"""Build the offline demo: synthetic data files under mount/data (demo.json for seq2seq,
clf.json and multilabel.json for the classifier) and a tiny T5 under mount/models, so the
demo and the tests need no download."""

from __future__ import annotations

import os
from pathlib import Path

from workflow import demo
from workflow.jsonio import write_json
from workflow.paths import data_dir, models_dir


def build(model_name: str = "tiny-t5", data_name: str = "demo.json", seed: int = 0) -> tuple[Path, Path]:
    """Write the demo data (if absent) and build the tiny model (if absent); returns both paths."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' "Writing model shards" bar on the user's terminal
    data_path = data_dir() / data_name
    records = demo.make_seq2seq_data(seed=seed)
    extra = {"clf.json": demo.make_classifier_data(seed=seed), "multilabel.json": demo.make_multilabel_data(seed=seed),
             "taxonomy.json": demo.make_taxonomy_data(seed=seed)}
    for name, payload in [(data_name, records), *extra.items()]:
        if not (data_dir() / name).is_file():
            write_json(data_dir() / name, payload)
    model_dir = models_dir() / model_name
    if not (model_dir / "config.json").is_file():
        demo.build_tiny_model(model_dir, demo.corpus_texts(records), seed=seed)
    return model_dir, data_path
