"""Large data: JSON lines (a split field, or one file per split), checked by streaming, and the
training split tokenized once into a memory-mapped Arrow cache that reruns and requeues reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import run_cli

pytestmark = pytest.mark.integration


def write_lines(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def demo(mount) -> dict:
    return json.loads((mount / "data/demo.json").read_text())


def test_jsonl_trains_like_json_and_reuses_its_tokenized_cache(env, tmp_path, own_mount, demo):
    env = {**env, "WF_MOUNT_DIR": str(own_mount)}
    write_lines(own_mount / "data/lines.jsonl", [{**r, "split": s} for s in ("train", "eval") for r in demo[s]])
    spec = tmp_path / "lines.yaml"
    spec.write_text(yaml.safe_dump({"base": str(Path(__file__).resolve().parents[2] / "jobs/demo.yaml"),
                                    "data_name": "lines.jsonl", "train": {"max_steps": 30, "eval_steps": 30}}))
    first = run_cli("run", str(spec), env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    again = run_cli("run", str(spec), "train.seed=7", env=env)  # a new point on the same data
    assert again.returncode == 0, again.stderr[-2000:]
    logs = sorted((tmp_path / "runs/lines").glob("*/log.txt"), key=lambda p: p.stat().st_mtime)
    assert len(logs) == 2
    built, reused = (p.read_text() for p in logs)
    assert "tokenized 400 training rows" in built and "train: 400 examples" in built
    assert "tokenized" not in reused.replace("tokenized/", "") and "memory-mapped from" in reused
    assert "train: 400 examples" in reused
    caches = [p for p in (tmp_path / "runs/.cache/tokenized").iterdir() if not p.name.startswith(".")]  # not locks
    assert len(caches) == 1 and (caches[0] / "dataset").is_dir()


def test_one_file_per_split_and_streamed_checks(env, tmp_path, own_mount, demo):
    env = {**env, "WF_MOUNT_DIR": str(own_mount)}
    write_lines(own_mount / "data/split.train.jsonl", demo["train"])
    write_lines(own_mount / "data/split.eval.jsonl", demo["eval"])
    dry = run_cli("run", "jobs/demo.yaml", "data_name=split", "--dry_run", env=env)
    assert dry.returncode == 0 and "data split: train 400, eval 100" in dry.stdout, dry.stdout + dry.stderr

    bad = own_mount / "data/bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "completion": "b", "split": "train"}) + "\n{not json\n")
    result = run_cli("validate", "jobs/demo.yaml", "data_name=bad.jsonl", env=env)
    assert result.returncode != 0 and "bad.jsonl" in result.stderr and "line 2" in result.stderr, result.stderr
    write_lines(bad, [{"prompt": "a", "split": "train"}, {"prompt": "b", "completion": "c", "split": "test"}])
    result = run_cli("validate", "jobs/demo.yaml", "data_name=bad.jsonl", env=env)
    assert "bad.jsonl line 1.completion" in result.stderr and "bad.jsonl line 2.split" in result.stderr, result.stderr


def test_classifier_rows_come_from_the_same_cache(env, tmp_path, own_mount):
    """Multi-label records become one row per (input, label), built once: 400 inputs x 4 labels."""
    env = {**env, "WF_MOUNT_DIR": str(own_mount)}
    clf = json.loads((own_mount / "data/multilabel.json").read_text())
    write_lines(own_mount / "data/ml.jsonl", [{**r, "split": s} for s in ("train", "eval") for r in clf[s]])
    spec = tmp_path / "ml.yaml"
    spec.write_text(yaml.safe_dump({"base": str(Path(__file__).resolve().parents[2] / "jobs/multilabel.yaml"),
                                    "data_name": "ml.jsonl", "classifier": {"labels": clf["labels"]},
                                    "train": {"max_steps": 20, "eval_steps": 20}}))
    for seed in (1, 2):
        result = run_cli("run", str(spec), f"train.seed={seed}", env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    logs = sorted((tmp_path / "runs/ml").glob("*/log.txt"), key=lambda p: p.stat().st_mtime)
    built, reused = (p.read_text() for p in logs)
    assert "tokenized 1600 training rows" in built and "train: 1600 rows" in built
    assert "tokenized 1600" not in reused and "train: 1600 rows" in reused


def test_jobs_building_the_same_rows_at_once_build_them_once(tmp_path, monkeypatch, own_mount):
    """The points of a sweep start together on one data file: one job tokenizes, the others wait
    for it and load its rows (two SLURM array tasks once collided on the final rename)."""
    import threading
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from workflow.node import finetune_seq2seq, tokenized
    from workflow.spec import TrainSpec

    monkeypatch.setenv("WF_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WF_MOUNT_DIR", str(own_mount))
    tokenizer = AutoTokenizer.from_pretrained(str(own_mount / "models/tiny-t5"))
    args = SimpleNamespace(main_process_first=lambda **kw: __import__("contextlib").nullcontext())
    builds, results, errors = [], [], []
    real_build = tokenized.build
    monkeypatch.setattr(tokenized, "build", lambda *a: builds.append(1) or real_build(*a))

    def job():
        try:
            results.append(tokenized.cached("demo.json", tokenizer, "t", lambda b: finetune_seq2seq.tokenize(
                b, tokenizer, TrainSpec()), args))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(builds) == 1 and [len(r[0]) for r in results] == [400, 400, 400]
