"""The bad-input corpus: every case must fail cleanly through the real CLI.

Each case asserts: exit code != 0; one message that names the file and the key path, what was
expected and what was given; no traceback; nothing submitted; no MLflow run and no run
directory left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_cli

DEMO = str(ROOT / "jobs/demo.yaml")
GOOD = {"prompt": "translate: red big dog", "completion": "rouge grand chien"}
CLF_GOOD = {"input": "red big dog", "target": 1.0}


def spec(**over) -> dict:
    return {"base": DEMO, **over}


def train(**over) -> dict:
    return spec(train=over)


# name -> (kind, payload, extra CLI args, substrings the message must contain)
# kind: "spec" (run a spec), "sweep" (run a sweep), "data" (a seq2seq data file), "clfdata"
# (a classifier data file), "raw" (a spec file's raw text or bytes), "cli" (arguments only), "preds"
# (a predictions file for evaluate)
CASES = {
    "unknown top-level key": ("spec", spec(learning_rate=1e-3), [], ["learning_rate", "did you mean 'train.learning_rate'"]),
    "misspelled nested key": ("spec", train(learnig_rate=1e-3), [], ["job.yaml", "train.learnig_rate", "did you mean 'learning_rate'"]),
    "string for an int": ("spec", train(max_steps="ten"), [], ["job.yaml", "train.max_steps", "'ten'"]),
    "fraction for an int": ("spec", train(max_steps=2.5), [], ["train.max_steps", "2.5"]),
    "zero batch size": ("spec", train(train_batch_size=0), [], ["job.yaml", "train.train_batch_size", "greater than 0", "got 0"]),
    "negative warmup": ("spec", train(warmup_steps=-5), [], ["train.warmup_steps", "-5"]),
    "negative nodes": ("spec", spec(resources={"nodes": -1}), [], ["job.yaml", "resources.nodes", "-1"]),
    "zero cpus": ("spec", spec(resources={"cpus_per_task": 0}), [], ["resources.cpus_per_task", "got 0"]),
    "negative memory": ("spec", spec(resources={"mem_gb": -4}), [], ["resources.mem_gb", "-4"]),
    "unknown precision": ("spec", train(precision="fp8"), [], ["train.precision", "'fp8'", "bf16"]),
    "unknown task": ("spec", spec(task="translate"), [], ["task", "'translate'", "seq2seq"]),
    "both model sources": ("spec", spec(model_init_path="google/flan-t5-xxl"), [], ["model_init_path", "only one"]),
    "no model source": ("raw", "data_name: demo.json\n", [], ["model_init_name", "model_init_path", "got None"]),
    "missing data_name": ("raw", "model_init_name: tiny-t5\n", [], ["data_name", "required", "got nothing"]),
    "missing model folder": ("spec", spec(model_init_name="flan-t5-huge"), [], ["job.yaml", "model_init_name", "'flan-t5-huge'", "tiny-t5"]),
    "model path without config": ("spec", spec(model_init_name=None, model_init_path="/nonexistent/model"), [],
                                  ["model_init_path", "config.json", "'/nonexistent/model'"]),
    "malformed yaml": ("raw", "train:\n  max_steps: [1, 2\n", [], ["line", "expected valid YAML"]),
    "spec is a list": ("raw", "- a\n- b\n", [], ["expected a mapping of keys", "got list"]),
    "missing base": ("spec", {"base": "nowhere.yaml"}, [], ["base", "nowhere.yaml", "existing spec file"]),
    "unknown backend in spec": ("spec", spec(backend="k8s"), [], ["job.yaml", "backend", "'k8s'", "slurm"]),
    "unknown backend flag": ("spec", spec(), ["--backend", "kubernetes"], ["backend", "'kubernetes'"]),
    "override without =": ("spec", spec(), ["train.max_steps"], ["<command line>", "train.max_steps", "key.path=value"]),
    "override unknown key": ("spec", spec(), ["train.lr=1"], ["train.lr", "did you mean"]),
    "override bad value": ("spec", spec(), ["train.max_steps=-3"], ["train.max_steps", "-3"]),
    "n_samples without temperature": ("spec", spec(generate={"n_samples": 4}), [], ["generate.n_samples", "temperature > 0",
                                                                                  "num_beams >= n_samples"]),
    "unknown metric": ("spec", spec(generate={"metrics": ["bleu", "meteor"]}), [], ["generate.metrics.1", "'meteor'"]),
    "zero stage 1": ("spec", spec(deepspeed={"enabled": True, "stage": 1}), [], ["deepspeed.stage", "0, 2 or 3", "got 1"]),
    "offload_param without stage 3": ("spec", spec(deepspeed={"stage": 2, "offload_param": "cpu"}), [],
                                      ["deepspeed.offload_param", "stage 3", "stage 2"]),
    "fp16 and bf16": ("spec", spec(deepspeed={"fp16": True, "bf16": True}), [], ["deepspeed.fp16", "cannot both"]),
    "global batch does not divide": ("spec", train(global_batch_size=50), [], ["train.global_batch_size", "got 50"]),
    "lora module not in model": ("spec", spec(lora={"target_modules": ["q", "query"]}), [],
                                 ["lora.target_modules", "'query' (not in the model)"]),
    "local backend with 2 nodes": ("spec", spec(resources={"nodes": 2}), [], ["resources.nodes", "local backend"]),
    "ctl without container": ("spec", spec(backend="ctl"), [], ["ctl.container", "container image"]),
    "credential in spec": ("spec", spec(tracking={"uri": "http://bob:hunter22@127.0.0.1:5000"}), [],
                           ["tracking.uri", "no credentials", "(hidden)"]),
    "missing data file": ("spec", spec(data_name="nope.json"), [], ["job.yaml", "nope.json", "data_name", "no such file"]),
    "malformed json": ("data", "{oops", [], ["bad.json", "line 1", "valid JSON"]),
    "data is a list": ("data", "[1, 2]", [], ["bad.json", '{"train"', "got list"]),
    "empty train split": ("data", {"train": [], "eval": [GOOD]}, [], ["bad.json:train", "at least one record", "empty"]),
    "empty eval split": ("data", {"train": [GOOD], "eval": []}, [], ["bad.json:eval", "at least one record"]),
    "missing eval split": ("data", {"train": [GOOD]}, [], ["bad.json:eval", "missing split"]),
    "record without completion": ("data", {"train": [GOOD, {"prompt": "x"}], "eval": [GOOD]}, [],
                                  ["bad.json:train[1].completion", "missing key"]),
    "prompt not a string": ("data", {"train": [{"prompt": 3, "completion": "x"}], "eval": [GOOD]}, [],
                            ["bad.json:train[0].prompt", "expected a string", "got 3"]),
    "record not an object": ("data", {"train": ["just text"], "eval": [GOOD]}, [], ["bad.json:train[0]", "got str"]),
    "unknown split": ("data", {"train": [GOOD], "eval": [GOOD], "test": [GOOD]}, [], ["bad.json:test", "unknown key"]),
    "target out of range": ("clfdata", {"train": [CLF_GOOD, {"input": "x", "target": 1.5}], "eval": [CLF_GOOD]}, [],
                            ["bad.json:train[1].target", "[0, 1]", "1.5"]),
    "target not a number": ("clfdata", {"train": [{"input": "x", "target": "yes"}], "eval": [CLF_GOOD]}, [],
                            ["bad.json:train[0].target", "'yes'"]),
    "target is a bool": ("clfdata", {"train": [{"input": "x", "target": True}], "eval": [CLF_GOOD]}, [],
                         ["bad.json:train[0].target", "True"]),
    "input not a string": ("clfdata", {"train": [{"input": ["x"], "target": 1}], "eval": [CLF_GOOD]}, [],
                           ["bad.json:train[0].input", "expected a string"]),
    "labels outside the set": ("clfdata", {"labels": ["a", "b"], "train": [{"input": "x", "labels": ["c"]}],
                                           "eval": [{"input": "y", "labels": ["a"]}]}, [],
                               ["bad.json:train[0].labels", "'c'"]),
    "labels without a label set": ("clfdata", {"train": [{"input": "x", "labels": ["c"]}],
                                               "eval": [{"input": "y", "labels": ["c"]}]}, [],
                                   ["bad.json:labels", "a label set"]),
    "search: unknown distribution": ("sweep", {"search": {"space": {"train.learning_rate": {"loguniforn": [1e-5, 1e-2]}},
                                                          "trials": 4}}, [],
                                     ["s.yaml:search.space.train.learning_rate", "loguniform", "did you mean"]),
    "search: bounds reversed": ("sweep", {"search": {"space": {"train.learning_rate": {"loguniform": [1e-2, 1e-5]}},
                                                     "trials": 4}}, [],
                                ["search.space.train.learning_rate.loguniform", "low < high", "reversed"]),
    "search: unknown key path": ("sweep", {"search": {"space": {"train.learnig_rate": {"uniform": [0, 1]}}, "trials": 4}},
                                 [], ["search.space.train.learnig_rate", "did you mean"]),
    "search: metric not in the registry": ("sweep", {"search": {"space": {"train.seed": {"int": [0, 9]}}, "trials": 4,
                                                                "metric": "eval_los"}}, [],
                                           ["search.metric", "eval_los", "did you mean 'eval_loss'"]),
    "search: pruning on a metric computed once": ("sweep", {"search": {"space": {"train.seed": {"int": [0, 9]}},
                                                                       "trials": 4, "metric": "exact_match",
                                                                       "pruner": "asha"}}, [],
                                                  ["search.metric", "every evaluation", "exact_match"]),
    "search: min_steps past max_steps": ("sweep", {"search": {"space": {"train.seed": {"int": [0, 9]}}, "trials": 4,
                                                              "pruner": {"asha": {"min_steps": 5000}}}}, [],
                                         ["search.pruner.min_steps", "train.max_steps", "5000"]),
    "search: min_steps off the evaluations": ("sweep", {"search": {"space": {"train.seed": {"int": [0, 9]}},
                                                                   "trials": 4, "pruner": {"asha": {"min_steps": 150}}}},
                                              [], ["search.pruner.min_steps", "multiple of train.eval_steps", "150"]),
    "search: unknown pruner": ("sweep", {"search": {"space": {"train.seed": {"int": [0, 9]}}, "trials": 4,
                                                    "pruner": "ashaa"}}, [], ["search.pruner", "'ashaa'", "did you mean"]),
    "search with a grid": ("sweep", {"grid": {"train.seed": [1, 2]},
                                     "search": {"space": {"train.seed": {"int": [0, 9]}}, "trials": 4}}, [],
                           ["s.yaml:search", "without grid", "grid"]),
    "missing sweep base": ("sweep", {"base": "nope.yaml", "grid": {"train.seed": [1]}}, [], ["s.yaml", "base", "nope.yaml"]),
    "empty grid axis": ("sweep", {"grid": {"train.seed": []}}, [], ["s.yaml:grid.train.seed", "non-empty"]),
    "zip of unequal lengths": ("sweep", {"zip": {"train.seed": [1, 2], "train.learning_rate": [0.1]}}, [],
                               ["s.yaml:zip", "equal length", "train.seed: 2"]),
    "duplicate points": ("sweep", {"points": [{"train.seed": 1}, {"train.seed": 1}]}, [],
                         ["s.yaml", "distinct points", "duplicates point 0"]),
    "unknown sweep key": ("sweep", {"gird": {"train.seed": [1]}}, [], ["s.yaml:gird", "did you mean 'grid'"]),
    "unknown grid path": ("sweep", {"grid": {"train.sed": [1]}}, [], ["s.yaml:grid.train.sed", "did you mean"]),
    "bad distribution": ("sweep", {"random": {"n": 2, "params": {"train.seed": {"normal": [0, 1]}}}}, [],
                         ["s.yaml:random.params.train.seed", "choice|uniform|loguniform|int"]),
    "loguniform at zero": ("sweep", {"random": {"n": 2, "params": {"train.learning_rate": {"loguniform": [0, 1]}}}},
                           [], ["random.params.train.learning_rate.loguniform", "above 0"]),
    "invalid value in a grid": ("sweep", {"grid": {"train.max_steps": [10, 0]}}, [],
                                ["s.yaml:grid.train.max_steps", "greater than 0"]),
    "too many points": ("sweep", {"max_points": 2, "grid": {"train.seed": [1, 2, 3]}}, [],
                        ["s.yaml:max_points", "at most 2 points", "3 points"]),
    "bad sweep name": ("sweep", {"name": "my sweep!", "grid": {"train.seed": [1]}}, [], ["s.yaml:name", "'my sweep!'"]),
    "unknown retry": ("sweep", {"grid": {"train.seed": [1]}}, ["--retry", "all"], ["--retry", "one of failed", "'all'"]),
    "status of an unknown sweep": ("cli", ["status", "nosuch"], [], ["nosuch", "expected an existing sweep manifest"]),
    "logs of an unknown sweep": ("cli", ["logs", "nosuch"], [], ["nosuch", "no such file"]),
    "missing spec file": ("cli", ["run", "jobs/nope.yaml"], [], ["jobs/nope.yaml", "no such file"]),
    "missing sweep file": ("cli", ["sweep", "sweeps/nope.yaml"], [], ["sweeps/nope.yaml", "no such file"]),
    # the command line, checked before anything runs; evaluate's inputs; files that are not UTF-8
    "misspelled flag": ("spec", spec(), ["--dryrun"], ["<command line>", "'--dryrun'", "did you mean '--dry_run'?"]),
    "override written as a flag": ("spec", spec(), ["--train.max_steps=10"],
                                   ["'--train.max_steps=10'", "without dashes: 'train.max_steps=10'"]),
    "misspelled flag of a sweep": ("sweep", {"grid": {"train.seed": [1, 2]}}, ["--backend", "slurm", "--dryrun"],
                                   ["'--dryrun'", "did you mean '--dry_run'?"]),
    "flag without its value": ("spec", spec(), ["--backend"], ["--backend", "a value after it", "got nothing"]),
    "word for a number flag": ("cli", ["logs", "demo", "--tail", "many"], [], ["--tail", "a whole number", "'many'"]),
    "positional too many": ("cli", ["status", "demo", "extra"], [], ["at most 1 positional", "'extra'"]),
    "override with a bad value": ("spec", spec(), ["train.max_steps=abc"], ["<command line>:train.max_steps", "'abc'"]),
    "grid key of a block": ("sweep", {"grid": {"train.lr": [1e-3, 1e-2]}}, [],
                            ["grid.train.lr", "did you mean 'train.learning_rate'?"]),
    "data file not UTF-8": ("data", '{"train": [{"prompt": "caf\xe9", "completion": "x"}]}'.encode("latin-1"), [],
                            ["bad.json", "line 1", "UTF-8 text", "byte 0xe9"]),
    "spec file not UTF-8": ("raw", "train:\n  max_steps: 5  # caf\xe9\n".encode("latin-1"), [],
                            ["job.yaml", "line 2", "UTF-8 text", "0xe9"]),
    "evaluate an unknown metric": ("preds", [{"prompt": "a", "completion": "b", "samples": ["b"]}],
                                   ["--metrics", "exact_match,bogus"], ["--metrics", "'bogus'", "rouge_l"]),
    "evaluate a misspelled metric": ("preds", [{"prompt": "a", "completion": "b", "samples": ["b"]}],
                                     ["--metrics", "[exact_mach]"], ["'exact_mach'", "did you mean 'exact_match'?"]),
    "evaluate classifier without targets": ("preds", [{"input": "a", "score": 0.7}], [],
                                            ["preds.json", "[0].target", "--references"]),
    "evaluate a missing file": ("cli", ["evaluate", "nope.json"], [], ["--predictions", "'nope.json'", "no such file"]),
    "evaluate unmatched references": ("preds", [{"prompt": "a", "samples": ["b"]}], ["--references", "demo.json"],
                                      ["no reference for any", "1 of 1 unmatched"]),
    # training knobs
    "num_epochs and max_steps both": ("spec", train(max_steps=300, num_epochs=2), [],
                                      ["job.yaml", "train.num_epochs", "train.max_steps", "both"]),
    "unknown lr scheduler": ("spec", train(lr_scheduler="cosin"), [],
                             ["job.yaml", "train.lr_scheduler", "'cosin'", "did you mean 'cosine'?"]),
    "label smoothing of 1.5": ("spec", train(label_smoothing=1.5), [], ["job.yaml", "train.label_smoothing", "1.5"]),
    "unknown best metric": ("spec", train(load_best_at_end=True, save_steps=400, best_metric="eval_los"), [],
                            ["job.yaml", "train.best_metric", "'eval_los'", "did you mean 'eval_loss'?"]),
    "best checkpoint without an eval at each save": ("spec", train(load_best_at_end=True, save_steps=500, eval_steps=200),
                                                     [], ["train.save_steps", "multiple of eval_steps (200)", "500"]),
    "label smoothing for the classifier": ("spec", {"base": str(ROOT / "jobs/classifier.yaml"),
                                                    "train": {"label_smoothing": 0.1}}, [],
                                           ["job.yaml", "train.label_smoothing", "classifier", "0.1"]),
    # tokenizer coverage
    "text the tokenizer cannot read": ("data", {"train": [GOOD, {"prompt": "translate: 中文 ÜBER", "completion": "x"}],
                                                "eval": [GOOD]}, ["tokenizer_coverage.error=true"],
                                       ["job.yaml:tokenizer_coverage.max_unk", "bad.json:train", "'中文'", "'ÜBER'"]),
    # plan: host memory and activations
    "host memory above mem_gb": ("spec", {"base": str(ROOT / "jobs/flan-t5-xxl-zero3.yaml"), "backend": "local",
                                          "resources": {"mem_gb": 100},
                                          "deepspeed": {"stage": 2, "offload_optimizer": "cpu"}}, [],
                                 ["job.yaml:resources.mem_gb", "256.9 GiB of host memory per node", "got 100 GiB",
                                  "raise resources.mem_gb to 257", "ZeRO-3, 1 node(s) fits"]),
    "activations above the GPU": ("spec", {"base": str(ROOT / "jobs/flan-t5-xxl-zero3.yaml"), "backend": "local",
                                           "train": {"train_batch_size": 512, "max_source_length": 2048,
                                                     "gradient_checkpointing": False, "global_batch_size": None,
                                                     "gradient_accumulation_steps": 1}}, [],
                                  ["job.yaml:deepspeed", "GiB per GPU", "do not shrink with more nodes",
                                   "train.gradient_checkpointing=true", "train.train_batch_size=8 with "
                                   "train.gradient_accumulation_steps=64"]),
    # ctl: one node, run folders under the shared host dir
    "ctl with several nodes": ("spec", spec(backend="ctl", ctl={"container": "img", "shared_host_dir": "/"},
                                            resources={"nodes": 2, "gpus_per_node": 8}), [],
                               ["job.yaml:resources.nodes", "got 2", "--backend slurm"]),
    "ctl runs outside the shared dir": ("spec", spec(backend="ctl", ctl={"container": "img",
                                                                         "shared_host_dir": "/mnt/nowhere"}), [],
                                        ["job.yaml:ctl.shared_host_dir", "'/mnt/nowhere'", "WF_RUNS_DIR"]),
}


def build(name: str, tmp: Path, mount: Path) -> list[str]:
    """The command line of a case; its files go into ``tmp`` and the data files into ``mount``
    (the test's own copy)."""
    kind, payload, extra, _ = CASES[name]
    if kind == "cli":
        return list(payload)
    if kind == "preds":
        (mount / "data" / "preds.json").write_text(json.dumps(payload))
        return ["evaluate", "preds.json", *extra]
    if kind in ("data", "clfdata"):
        write(mount / "data" / "bad.json", payload if isinstance(payload, (str, bytes)) else json.dumps(payload))
        body = spec(data_name="bad.json") if kind == "data" else {"base": str(ROOT / "jobs/classifier.yaml"),
                                                                  "data_name": "bad.json"}
        path = tmp / "job.yaml"
        path.write_text(yaml.safe_dump(body))
        return ["run", str(path), *extra]
    if kind == "sweep":
        (tmp / "base.yaml").write_text(yaml.safe_dump(spec()))
        path = tmp / "s.yaml"
        path.write_text(yaml.safe_dump({"base": "base.yaml", **payload}))
        return ["sweep", str(path), *extra]
    path = tmp / "job.yaml"
    write(path, payload if kind == "raw" else yaml.safe_dump(payload))
    return ["run", str(path), *extra]


def write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_fails_cleanly(name, env, tmp_path, own_mount, queue):
    before = queue()
    result = run_cli(*build(name, tmp_path, own_mount), env={**env, "WF_MOUNT_DIR": str(own_mount)})
    message = result.stderr
    assert result.returncode != 0, (name, result.stdout[-500:])
    assert "Traceback" not in message + result.stdout, message
    assert message.startswith("error:") and message.count("error:") == 1, message
    assert "expected" in message and "got" in message, message
    for needle in CASES[name][3]:
        assert needle in message, (needle, message)
    assert not (tmp_path / "runs").exists(), "no run directory may be left behind"
    assert not (tmp_path / "mlflow").exists(), "no MLflow store or run may be created"
    assert queue() == before, "nothing may be submitted"
