"""The training split tokenized once, shared by every rank, run and requeue.

The first process reads the split (JSON lines in blocks into Arrow; a JSON document whole),
turns its records into tokenized rows with the task's function, and saves them under
``runs/.cache/tokenized/<key>/``; every rank then memory-maps that folder. The key covers the
data's content, the tokenizer and the task's settings that shape the rows, so a rerun, another
point on the same data or a requeue loads the rows instead of tokenizing again. The eval records,
which evaluation reads as records, are kept beside them (``eval.json``).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from workflow import data as data_files
from workflow.jsonio import read_json, write_json
from workflow.paths import runs_dir

log = logging.getLogger("workflow.data")


def cached(data_name: str, tokenizer, settings: str, rows: Callable[[dict], dict], args):
    """(the training rows as a memory-mapped Dataset, how many were truncated, the eval records).
    ``rows``: a batched ``datasets.map`` function from record columns to tokenized columns, with a
    boolean ``truncated`` column; ``settings``: everything else that shapes the rows."""
    from datasets import Dataset

    folder = runs_dir() / ".cache" / "tokenized" / key(data_name, tokenizer, settings)
    with args.main_process_first(local=False, desc="tokenizing the training split"):  # ranks of this job
        if not (folder / "meta.json").is_file():
            with _locked(folder):  # other jobs on the same data (the points of a sweep) wait, then load it
                if not (folder / "meta.json").is_file():
                    build(data_name, rows, folder)
    log.info("training split: memory-mapped from %s", folder)
    return (Dataset.load_from_disk(str(folder / "dataset")), read_json(folder / "meta.json")["truncated"],
            read_json(folder / "eval.json"))


def key(data_name: str, tokenizer, settings: str) -> str:
    digest = hashlib.sha256(f"v3|{settings}|".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(tokenizer).encode())
    files = data_files.jsonl_files(data_name) or {"json": data_files.data_path(data_name)}
    for path in files.values():
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def build(data_name: str, rows: Callable[[dict], dict], folder: Path) -> None:
    from datasets import Dataset, load_dataset

    started = time.time()
    files = data_files.jsonl_files(data_name)
    work = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    if files is None:  # a JSON data file is one document: read whole, as before
        raw = Dataset.from_list(data_files.read_split(data_name, "train"))
    else:
        source = files.get("all") or files["train"]  # datasets reads JSON lines in blocks into Arrow
        raw = load_dataset("json", data_files=str(source), split="train", cache_dir=str(work / "raw"))
        if "all" in files:
            raw = raw.filter(lambda batch: [s == "train" for s in batch["split"]], batched=True)
    done = raw.map(rows, batched=True, batch_size=10_000, remove_columns=raw.column_names, desc="tokenizing")
    truncated = sum(done["truncated"])
    done.remove_columns("truncated").save_to_disk(str(work / "dataset"))
    write_json(work / "eval.json", data_files.read_split(data_name, "eval"))
    write_json(work / "meta.json", {"rows": len(done), "truncated": truncated, "seconds": time.time() - started})
    shutil.rmtree(work / "raw", ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(work, folder)
    except OSError:  # another job built the same rows first (a filesystem where the lock does not hold)
        if not (folder / "meta.json").is_file():
            raise
        shutil.rmtree(work, ignore_errors=True)
        return
    log.info("tokenized %d training rows in %.1f s into %s", len(done), time.time() - started, folder)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def records(batch: dict) -> list[dict]:
    """A batch of columns back to records; keys a record lacks (None in Arrow's table) are dropped."""
    return [{k: v for k, v in zip(batch, values) if v is not None} for values in zip(*batch.values())]
