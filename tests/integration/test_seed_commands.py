"""The core workflow's README command lines, verbatim: the inner commands of its two ``ctl job run``
lines, with ``python3 seq2seq.py`` / ``python3 clf.py`` run as ``python -m workflow.seq2seq`` /
``workflow.clf`` (the mapping the seeds' index gives). They name a local flan-t5-xxl folder, a hub
id and data files without their extension; here those are the tiny T5 and data in the original
formats (extra keys in the records, as the original files had)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.integration

# Copied from the seed README, as written (its double space included).
SEQ2SEQ = ("python3 seq2seq.py --model_init_name flan-t5-xxl --training_run_name 0216syn_explain "
           "--gradient_accumulation_steps 2 --train_batch_size 8 --max_steps 6001 --data synthetic_explain  "
           "--eval_steps 2000 --temperature 0.001 --n_samples 1")
CLF = ('python3 clf.py --model_pretrain_name "google/flan-t5-xl" --data_name 1226verifier_ft_all '
       '--max_steps 2001 --eval_steps 2000 --save_steps 2000')
SHIMS = {"seq2seq.py": "workflow.seq2seq", "clf.py": "workflow.clf"}


def as_run_here(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[0] == "python3" and words[1] in SHIMS
    return [sys.executable, "-m", SHIMS[words[1]], *words[2:]]


@pytest.fixture
def original(tmp_path, mount) -> dict:
    """A mount and a hub cache holding what the commands name."""
    root = tmp_path / "orig-mount"
    shutil.copytree(mount / "data", root / "data")
    shutil.copytree(mount / "models/tiny-t5", root / "models/flan-t5-xxl")
    demo = json.loads((mount / "data/demo.json").read_text())
    explained = {split: [{**r, "explanation": f"word by word: {r['completion']}", "id": i}
                         for i, r in enumerate(demo[split])] for split in ("train", "eval")}
    (root / "data/synthetic_explain.json").write_text(json.dumps(explained))
    clf = json.loads((mount / "data/clf.json").read_text())
    (root / "data/1226verifier_ft_all.json").write_text(json.dumps(
        {split: [{**r, "source": "verifier"} for r in clf[split]] for split in ("train", "eval")}))
    cache = tmp_path / "hub"  # google/flan-t5-xl, as a download would have cached it
    revision = "0" * 40
    shutil.copytree(mount / "models/tiny-t5", cache / "models--google--flan-t5-xl/snapshots" / revision)
    (cache / "models--google--flan-t5-xl/refs").mkdir()
    (cache / "models--google--flan-t5-xl/refs/main").write_text(revision)
    return {"WF_MOUNT_DIR": str(root), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def test_core_readme_command_lines_run_verbatim(env, original, tmp_path):
    # Both at once, a thread each: the tiny T5 trains no faster on two threads than on one.
    env = {**env, **original, "OMP_NUM_THREADS": "1"}
    logs = {SEQ2SEQ: tmp_path / "seq2seq.log", CLF: tmp_path / "clf.log"}
    with logs[SEQ2SEQ].open("w") as out_seq2seq, logs[CLF].open("w") as out_clf:
        started = {command: subprocess.Popen(as_run_here(command), cwd=ROOT, env=env, stdout=out,
                                             stderr=subprocess.STDOUT)
                   for command, out in ((SEQ2SEQ, out_seq2seq), (CLF, out_clf))}
        for command, proc in started.items():
            assert proc.wait(timeout=1200) == 0, command + "\n" + logs[command].read_text()[-6000:]
    assert (tmp_path / "orig-mount/models/0216syn_explain/config.json").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    runs = {r.info.run_name: r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if "mlflow.parentRunId" in r.data.tags}  # the point runs (each sweep's parent has the same name)
    seq2seq = runs["0216syn_explain"].data
    assert {k: seq2seq.params[k] for k in ("train.max_steps", "train.gradient_accumulation_steps",
                                           "train.train_batch_size", "generate.temperature", "data_name")} == {
        "train.max_steps": "6001", "train.gradient_accumulation_steps": "2", "train.train_batch_size": "8",
        "generate.temperature": "0.001", "data_name": "synthetic_explain"}
    assert seq2seq.metrics["exact_match"] >= 0.9  # 6001 steps learn the demo task
    clf = runs["classifier"].data
    assert clf.params["model_init_path"] == "google/flan-t5-xl" and clf.params["train.max_steps"] == "2001"
    assert clf.metrics["roc_auc"] >= 0.9
