"""Batch inference on new data: ``python -m workflow.node.predict <folder> [<shard> <shards>]``.

The launcher (``workflow.launch.predict``) writes ``<folder>/job.json``: the point's spec with
its decoding overrides, and the model, input file and output file. Each shard handles every
``shards``-th record and writes ``part-<shard>.json``; the shard that completes the set merges
the parts in input order into the output file, logs it to an MLflow run that is a child of the
point's run, and closes that run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from pathlib import Path

from workflow import data as data_files
from workflow.jsonio import read_json, write_json
from workflow.rundir import RunDir
from workflow.spec import JobSpec
from workflow.states import State

log = logging.getLogger("workflow.predict")


def main(folder: str, shard: int = 0, shards: int = 1) -> Path | None:
    """Predict one shard; returns the output file when this shard completed the set."""
    rd = RunDir(Path(folder))
    job = rd.read_job()
    spec, context = JobSpec.model_validate(job["spec"]), job["context"]
    os.environ.update(context.get("env", {}))
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s [shard {shard}/{shards}] %(levelname)s %(name)s: %(message)s")
    started = time.time()
    records = data_files.load_inputs(Path(context["inputs"]), spec.task)[shard::shards]
    model, tokenizer = load(Path(context["model"]), spec)
    log.info("predicting %d records with %s on %s", len(records), context["model"], model.device)
    rows = (predict_seq2seq if spec.task == "seq2seq" else predict_classifier)(model, tokenizer, records, spec)
    write_json(rd.root / f"part-{shard}.json", {"rows": rows, "seconds": time.time() - started})
    return merge(rd, context, spec, shards)


def load(path: Path, spec: JobSpec):
    import torch
    from transformers import AutoTokenizer

    from workflow.node.hf import model_class

    cuda = torch.cuda.is_available() and not spec.resources.on_cpu
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    dtype = torch.bfloat16 if cuda and spec.train.precision == "bf16" else torch.float32
    if (path / "adapter_config.json").is_file():
        from peft import AutoPeftModelForSeq2SeqLM as loader
    else:
        loader = model_class(str(path))
    model = loader.from_pretrained(str(path), dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(str(path))


def predict_seq2seq(model, tokenizer, records: list[dict], spec: JobSpec) -> list[dict]:
    """Each record with its samples and their log-probabilities, best sample first."""
    from workflow.node.decoding import generate, sequence_log_probs

    gen, size, limit = spec.generate, spec.train.eval_batch_size, spec.train.max_source_length
    rows = []
    for start in range(0, len(records), size):
        batch = records[start:start + size]
        samples = generate(model, tokenizer, [r["prompt"] for r in batch], gen, limit)
        prompts = [r["prompt"] for r, outs in zip(batch, samples) for _ in outs]
        scores = sequence_log_probs(model, tokenizer, prompts, [x for outs in samples for x in outs], limit)
        for i, (record, outs) in enumerate(zip(batch, samples)):
            scored = sorted(zip(outs, scores[i * gen.n_samples:(i + 1) * gen.n_samples]), key=lambda p: -p[1])
            rows.append({**record, "samples": [s for s, _ in scored], "scores": [v for _, v in scored]})
    return rows


def predict_classifier(model, tokenizer, records: list[dict], spec: JobSpec) -> list[dict]:
    """p(yes) of each input; with a label set (multi-label), of each label, and the predicted labels."""
    from workflow import metrics
    from workflow.node.finetune_classifier import score, yes_no_ids

    cfg = spec.classifier
    labels = data_files.labels_of(spec.data_name, cfg.labels)
    start = model.config.decoder_start_token_id
    if labels is None:
        rows = [{"text": cfg.template.format(input=r["input"]), "target": 0.0} for r in records]
        scores = score(model, tokenizer, rows, spec, yes_no_ids(tokenizer), start)
        return [{**record, "score": s} for record, s in zip(records, scores)]
    rows = [{"text": cfg.multilabel_template.format(input=r["input"], label=label), "target": 0.0}
            for r in records for label in labels]
    scores = score(model, tokenizer, rows, spec, yes_no_ids(tokenizer), start)
    out = []
    for i, record in enumerate(records):
        by_label = dict(zip(labels, scores[i * len(labels):(i + 1) * len(labels)]))
        out.append({**record, "scores": by_label,
                    "predicted": metrics.predict_labels(by_label, cfg.thresholds, cfg.default_label)})
    return out


def merge(rd: RunDir, context: dict, spec: JobSpec, shards: int) -> Path | None:
    """Once every part exists (under a lock: shards end together), write the output in input order."""
    with open(rd.root / ".merge.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        parts = [read_json(rd.root / f"part-{i}.json") for i in range(shards)]
        out = Path(context["out"])
        if not all(parts) or rd.read_state().get("state") == State.COMPLETED:
            return None
        rows = [parts[i % shards]["rows"][i // shards] for i in range(sum(len(p["rows"]) for p in parts))]
        write_json(out, rows)
        rd.write_state(state=State.COMPLETED, out=str(out), records=len(rows))
    track(rd, context, spec, rows, max(p["seconds"] for p in parts))
    log.info("wrote %d predictions to %s", len(rows), out)
    return out


def track(rd: RunDir, context: dict, spec: JobSpec, rows: list[dict], seconds: float) -> None:
    """The prediction's MLflow run, a child of the point's run: its settings, counts and the file."""
    from workflow.tracking import Tracker
    from workflow.paths import usable_tracking_uri

    tracker = Tracker(usable_tracking_uri(context["tracking_uri"]), None, rd, experiment=context["experiment"],
                      parent_run_id=context.get("parent_run_id"), run_name=context["run_name"], tags=context["tags"])
    tracker.start()
    tracker.log_params({"generate": spec.generate.model_dump(mode="json"), "predict.model": context["model"],
                        "predict.inputs": context["inputs"], "predict.shards": context["shards"]})
    values = [r["scores"][0] for r in rows if r.get("scores") and isinstance(r["scores"], list)]
    values += [r["score"] for r in rows if "score" in r]
    tracker.log_metrics({"predict_records": len(rows), "predict_seconds": seconds,
                         **({"predict_mean_score": sum(values) / len(values)} if values else {})}, 0)
    tracker.log_artifact(Path(context["out"]))
    tracker.finish(State.COMPLETED.mlflow_status)


class PredictShard:
    """What each SLURM array task runs (pickled by submitit, imported from the snapshot on the node)."""

    def __call__(self, folder: str, shard: int, shards: int) -> str | None:
        out = main(folder, shard, shards)
        return str(out) if out else None


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], *(int(a) for a in args[1:3]))
