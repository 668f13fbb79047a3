"""Benchmark P4: training throughput of the tool's seq2seq task against a plain HF script.

Run it from the repository root (about 15 minutes on 2 idle cores):

    python bench/throughput.py --runs 5

"ours" runs the tool for real (``python launch.py run <spec>``, local backend, the default
``train.group_by_length: true``) and reads ``train_runtime`` / ``train_samples_per_second_avg``
and ``eval_loss`` from the point's ``metrics.jsonl``. "baseline" is ``bench/baseline_seq2seq.py``:
``Seq2SeqTrainer`` with dynamic padding and the default random sampler, the same hyperparameters,
the same eval/save strategy, the same seed and the same thread count (what the tool's local
backend sets: cpu_count // max_parallel). Both train the same tiny T5 on the same generated
data for the same number of steps, on two data sets:

- uniform: every prompt has 10 to 12 words (about 11 to 29 tokens);
- mixed:   prompt lengths follow a long tail (about 2 to 170 tokens, median 17), so padding matters.

The order of the sides rotates every round (ours first, then baseline first) to spread machine
noise; round i uses seed 1000 + i on every side, so the spread of eval loss over rounds is the
seed noise. A run during which other processes used the CPU is re-run (--retries): a 2-thread
job on 2 cores slows down many times over when anything else runs. ``--ablate`` adds a third
side, the tool with ``group_by_length: false``, which separates the sampler's gain from the
tool's own overhead. Everything is written to a temporary directory (``WF_MOUNT_DIR``,
``WF_RUNS_DIR``, ``WF_MLFLOW_DIR`` point into it); nothing lands in the repository.
Results: a markdown table on stdout and JSON at --out (default /tmp/p4.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "bench" / "baseline_seq2seq.py"
MODEL = "tiny-t5"
SEED0 = 1000
# Identical on both sides (the tool gets them through its spec, the baseline as flags).
HYPER = {"learning_rate": 1e-3, "warmup_steps": 30, "train_batch_size": 32, "eval_batch_size": 64,
         "logging_steps": 25, "max_source_length": 256, "max_target_length": 32}
GOAL_RATIO = {"uniform": 1.0, "mixed": 1.3}
QUIET_CORES = 0.15  # a run during which other processes used more CPU than this is retried
QUIET_WINDOW_S = 10  # ... and each run starts only after this long below it
COMPLETION_WORDS = 5  # a completion translates the first five words of its prompt


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="P4: training throughput, tool vs plain Seq2SeqTrainer.")
    p.add_argument("--runs", type=int, default=5, help="runs per side per data set")
    p.add_argument("--steps", type=int, default=400, help="max_steps of every run")
    p.add_argument("--datasets", default="uniform,mixed", help="comma-separated: uniform, mixed")
    p.add_argument("--retries", type=int, default=3,
                   help="re-run a run during which other processes loaded the machine (up to N times)")
    p.add_argument("--max_wait", type=float, default=900,
                   help="seconds to wait, before each run, for other processes to leave the CPU idle")
    p.add_argument("--ablate", action="store_true",
                   help="also run the tool with train.group_by_length=false (separates sampler gain from tool overhead)")
    p.add_argument("--n_train", type=int, default=2000)
    p.add_argument("--n_eval", type=int, default=200)
    p.add_argument("--out", default="/tmp/p4.json", help="JSON results")
    p.add_argument("--work_dir", help="scratch directory (default: a new one under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return p.parse_args(argv)


# ---------------------------------------------------------------- machine and environment

def tool_threads() -> int:
    """OMP_NUM_THREADS the tool's local backend sets for one point (max_parallel 1, one rank):
    cpu_count // (max_parallel * ranks), see workflow/launch/backends/local.py LocalBackend.render."""
    return max(1, os.cpu_count() or 1)


def machine_info() -> dict:
    import torch
    import transformers

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "threads_per_side": tool_threads()}


def child_env(work: Path) -> dict:
    """Environment of every run: isolated mount/runs/MLflow dirs and the same thread count."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(WF_MOUNT_DIR=str(work / "mount"), WF_RUNS_DIR=str(work / "runs"),
               WF_MLFLOW_DIR=str(work / "mlflow"), OMP_NUM_THREADS=str(tool_threads()),
               TOKENIZERS_PARALLELISM="false")
    return env


# ---------------------------------------------------------------- model and data

def prepare_model(work: Path, env: dict) -> Path:
    """The tiny T5 in <work>/mount/models: a copy of the repo's, else built by the tool."""
    target = work / "mount" / "models" / MODEL
    existing = REPO / "mount" / "models" / MODEL
    if (existing / "config.json").is_file():
        shutil.copytree(existing, target)
    else:
        check_call([sys.executable, "launch.py", "tiny_model"], env, work / "tiny_model.log")
    return target


def lexicon() -> dict[str, str]:
    """Source word -> target word, every word the tiny tokenizer was trained on."""
    sys.path.insert(0, str(REPO))
    from workflow.demo import LEXICON

    return {src: tgt for table in LEXICON for src, tgt in table.items()}


def word_count(kind: str, rng: random.Random) -> int:
    """Prompt length in words (a word is 1 to 4 tokens, about 2 on average)."""
    if kind == "uniform":
        return rng.randint(10, 12)
    return min(100, max(1, round(rng.lognormvariate(math.log(10), 1.0))))  # median 10, long tail


def make_dataset(kind: str, n_train: int, n_eval: int, seed: int = 0) -> dict:
    """{"train": [...], "eval": [...]}: a prompt of random words; its completion translates the first words."""
    words = lexicon()
    vocab = sorted(words)
    rng = random.Random(f"{kind}-{seed}")
    records = []
    for _ in range(n_train + n_eval):
        prompt = [rng.choice(vocab) for _ in range(word_count(kind, rng))]
        records.append({"prompt": " ".join(prompt),
                        "completion": " ".join(words[w] for w in prompt[:COMPLETION_WORDS])})
    return {"train": records[:n_train], "eval": records[n_train:]}


def write_dataset(work: Path, kind: str, n_train: int, n_eval: int) -> Path:
    path = work / "mount" / "data" / f"p4-{kind}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(make_dataset(kind, n_train, n_eval)))
    return path


def length_stats(data_path: Path, model_dir: Path) -> dict:
    """Prompt token lengths, and the share of real (non-pad) prompt tokens per batch under the
    random sampler and under HF's length grouping (simulated with the same megabatch rule)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train = json.loads(data_path.read_text())["train"]
    src = [min(len(ids), HYPER["max_source_length"])
           for ids in tokenizer([r["prompt"] for r in train])["input_ids"]]
    tgt = [len(ids) for ids in tokenizer(text_target=[r["completion"] for r in train])["input_ids"]]
    q = statistics.quantiles(src, n=100)
    bs = HYPER["train_batch_size"]
    return {"prompt_tokens": {"min": min(src), "p50": q[49], "p90": q[89], "p99": q[98], "max": max(src),
                              "mean": statistics.fmean(src)},
            "completion_tokens": {"min": min(tgt), "max": max(tgt), "mean": statistics.fmean(tgt)},
            "real_token_share_random": _real_share(src, _random_order(len(src)), bs),
            "real_token_share_grouped": _real_share(src, _grouped_order(src, bs), bs)}


def _random_order(n: int) -> list[int]:
    order = list(range(n))
    random.Random(0).shuffle(order)
    return order


def _grouped_order(lengths: list[int], bs: int) -> list[int]:
    """transformers.trainer_pt_utils.get_length_grouped_indices, without torch."""
    mult = max(1, min(len(lengths) // (bs * 4), 50))
    order, mega = _random_order(len(lengths)), mult * bs
    return [i for s in range(0, len(order), mega)
            for i in sorted(order[s:s + mega], key=lambda i: lengths[i], reverse=True)]


def _real_share(lengths: list[int], order: list[int], bs: int) -> float:
    batches = [[lengths[i] for i in order[s:s + bs]] for s in range(0, len(order), bs)]
    return sum(map(sum, batches)) / sum(max(b) * len(b) for b in batches)


# ---------------------------------------------------------------- one run of each side

def check_call(argv: list[str], env: dict, log: Path) -> dict:
    """Run a command from the repo root with its output in ``log``. Returns its wall time and
    ``foreign_cores``: the CPU that other processes used meanwhile (in cores, averaged over the run).
    A 2-thread OpenMP job on 2 cores slows down many times over when anything else runs."""
    busy0, ours0, start = busy_cpu_s(), children_cpu_s(), time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{' '.join(argv)} exited {code}; log {log}:\n{tail}")
    foreign = (busy_cpu_s() - busy0) - (children_cpu_s() - ours0)
    return {"wall_s": wall, "foreign_cores": max(0.0, foreign) / wall}


def busy_cpu_s() -> float:
    """Machine-wide non-idle CPU seconds (steal included) from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this script's finished children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_until_quiet(max_wait_s: float) -> float:
    """Block until other processes have used under QUIET_CORES for QUIET_WINDOW_S seconds in a row
    (a test suite leaves short gaps between its tests), at most ``max_wait_s``; returns the wait."""
    start, quiet_since = time.perf_counter(), time.perf_counter()
    while time.perf_counter() - start < max_wait_s:
        busy = busy_cpu_s()
        time.sleep(1.0)
        if (busy_cpu_s() - busy) >= QUIET_CORES:
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since >= QUIET_WINDOW_S:
            break
    return time.perf_counter() - start


def quiet_run(run, args) -> dict:
    """``run()`` on a quiet machine: wait for quiet, run, and re-run (at most ``args.retries`` times)
    if other processes used QUIET_CORES or more meanwhile; returns the least disturbed attempt."""
    attempts = []
    for _ in range(1 + args.retries):
        waited = wait_until_quiet(args.max_wait)
        if waited > QUIET_WINDOW_S + 5:
            print(f"    (waited {waited:.0f} s for other processes to finish)", flush=True)
        attempts.append(run())
        if attempts[-1]["foreign_cores"] < QUIET_CORES:
            break
        print(f"    (disturbed: other processes used {attempts[-1]['foreign_cores']:.2f} cores; "
              f"{'retrying' if len(attempts) <= args.retries else 'keeping the quietest attempt'})", flush=True)
    best = min(attempts, key=lambda a: a["foreign_cores"])
    return {**best, "attempts": len(attempts)}


def run_ours(work: Path, env: dict, data: Path, steps: int, seed: int, tag: str,
             group_by_length: bool = True) -> dict:
    """``python launch.py run`` on a spec based on jobs/demo.yaml; results from metrics.jsonl."""
    train = {**HYPER, "max_steps": steps, "eval_steps": steps, "save_steps": steps, "seed": seed,
             "group_by_length": group_by_length}
    spec = work / "specs" / f"{tag}.yaml"  # the file name is the sweep name: one fresh point per run
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(json.dumps({"base": str(REPO / "jobs" / "demo.yaml"), "data_name": str(data),
                                "train": train}, indent=1))  # JSON is YAML
    shutil.rmtree(work / "runs" / tag, ignore_errors=True)  # a retry must train again, not skip a done point
    call = check_call([sys.executable, "launch.py", "run", str(spec)], env, work / "logs" / f"{tag}.log")
    metrics = last_metrics(next((work / "runs" / tag).glob("*/metrics.jsonl")))
    return {"train_runtime": metrics["train_runtime"],
            "train_samples_per_second": metrics["train_samples_per_second_avg"],
            "eval_runtime_in_train": metrics.get("eval_runtime", 0.0),
            "eval_loss": metrics["eval_loss"], "best_eval_loss": metrics.get("best_eval_loss"),
            "model_dir": str(next((work / "runs" / tag).glob("*/model"))), **call}


def last_metrics(path: Path) -> dict:
    """The last value of every metric in a point's metrics.jsonl."""
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "metric":
            out[row["key"]] = row["value"]
    return out


def run_baseline(work: Path, env: dict, model: Path, data: Path, steps: int, seed: int, tag: str) -> dict:
    result = work / "baseline" / f"{tag}.json"
    result.parent.mkdir(exist_ok=True)
    flags = {**HYPER, "max_steps": steps, "eval_steps": steps, "save_steps": steps, "seed": seed}
    argv = [sys.executable, str(BASELINE), "--model", str(model), "--data", str(data),
            "--output_dir", str(work / "baseline" / tag), "--result_json", str(result)]
    argv += [f"--{k}={v}" for k, v in flags.items()]
    shutil.rmtree(work / "baseline" / tag, ignore_errors=True)
    call = check_call(argv, env, work / "logs" / f"{tag}.log")
    return {**json.loads(result.read_text()), **call}


def token_eval_loss(model_dir: str, data: Path) -> float:
    """Cross-entropy averaged over every label token of the eval split: the same scorer for every
    side, independent of how examples are batched. (HF's eval_loss is a mean of per-batch token
    means, so it moves with the eval sampler, and the tool's group_by_length changes that sampler.)"""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq

    torch.set_num_threads(tool_threads())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, padding=True)
    records, bs = json.loads(data.read_text())["eval"], HYPER["eval_batch_size"]
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(records), bs):
            chunk = records[start:start + bs]
            features = [{**tokenizer(r["prompt"], max_length=HYPER["max_source_length"], truncation=True),
                         "labels": tokenizer(text_target=r["completion"], max_length=HYPER["max_target_length"],
                                             truncation=True)["input_ids"]} for r in chunk]
            batch = collate(features)
            tokens = int((batch["labels"] != -100).sum())
            total += model(**batch).loss.item() * tokens
            count += tokens
    return total / count


def run_pairs(work: Path, env: dict, model: Path, kind: str, data: Path, args) -> list[dict]:
    """``args.runs`` rounds of every side; the order rotates each round (ours first, then baseline
    first, ...) to spread machine noise. Round i uses seed SEED0 + i on every side."""
    sides = ["ours", "baseline"] + (["ours_random"] if args.ablate else [])
    runners = {
        "ours": lambda seed, tag: run_ours(work, env, data, args.steps, seed, tag),
        "baseline": lambda seed, tag: run_baseline(work, env, model, data, args.steps, seed, tag),
        "ours_random": lambda seed, tag: run_ours(work, env, data, args.steps, seed, tag, group_by_length=False),
    }
    rounds = []
    for i in range(args.runs):
        seed, order, results = SEED0 + i, sides[i % len(sides):] + sides[:i % len(sides)], {}
        for side in order:
            tag = f"p4-{kind}-{i}-{side}"
            results[side] = r = quiet_run(lambda: runners[side](seed, tag), args)
            r["token_eval_loss"] = token_eval_loss(r["model_dir"], data)  # after the timed run
            print(f"  {kind} run {i + 1}/{args.runs} {side:11s}: {r['train_samples_per_second']:7.1f} samples/s, "
                  f"train_runtime {r['train_runtime']:6.1f} s, eval_loss {r['eval_loss']:.4f} "
                  f"(token-weighted {r['token_eval_loss']:.4f}), "
                  f"other load {r['foreign_cores']:.2f} cores", flush=True)
        rounds.append({"seed": seed, "order": order, **results})
    return rounds


# ---------------------------------------------------------------- summary

def train_only_sps(side: dict, steps: int) -> float:
    """Samples/s over training alone: train_runtime minus the one evaluation run inside train()."""
    return steps * HYPER["train_batch_size"] / (side["train_runtime"] - side["eval_runtime_in_train"])


def summarize(kind: str, rounds: list[dict], steps: int) -> dict:
    med = statistics.median
    sides = [s for s in ("ours", "baseline", "ours_random") if s in rounds[0]]
    sps = {s: [r[s]["train_samples_per_second"] for r in rounds] for s in sides}
    only = {s: [train_only_sps(r[s], steps) for r in rounds] for s in sides}
    loss = {s: [r[s]["token_eval_loss"] for r in rounds] for s in sides}
    recorded = {s: med(r[s]["eval_loss"] for r in rounds) for s in sides}
    ratios = [o / b for o, b in zip(sps["ours"], sps["baseline"])]
    ratio = med(ratios)
    rel_diff = (med(loss["ours"]) - med(loss["baseline"])) / med(loss["baseline"])
    paired = [o / b - 1 for o, b in zip(loss["ours"], loss["baseline"])]  # same seed, same data
    noise = max((max(loss[s]) - min(loss[s])) / med(loss[s]) for s in ("ours", "baseline"))  # seed spread
    out = {"dataset": kind, "runs": len(rounds), "steps": steps,
           "ours_samples_per_s": med(sps["ours"]), "baseline_samples_per_s": med(sps["baseline"]),
           "ratio": ratio, "ratio_min": min(ratios), "ratio_max": max(ratios),
           "train_only_ratio": med([o / b for o, b in zip(only["ours"], only["baseline"])]),
           "goal_ratio": GOAL_RATIO[kind], "ratio_ok": ratio >= GOAL_RATIO[kind],
           "ours_eval_loss": med(loss["ours"]), "baseline_eval_loss": med(loss["baseline"]),
           "eval_loss_rel_diff": rel_diff, "eval_loss_seed_spread": noise,
           "eval_loss_paired_diffs": paired, "eval_loss_paired_median": med(paired),
           "eval_loss_ok": abs(rel_diff) <= max(noise, 0.01),
           "ours_recorded_eval_loss": recorded["ours"], "baseline_recorded_eval_loss": recorded["baseline"],
           "max_other_load_cores": max(r[s]["foreign_cores"] for r in rounds for s in sides),
           "retried_runs": sum(r[s]["attempts"] > 1 for r in rounds for s in sides),
           "disturbed_runs": sum(r[s]["foreign_cores"] >= QUIET_CORES for r in rounds for s in sides)}
    if "ours_random" in sides:  # the tool with the random sampler: its overhead alone, and the sampler's gain
        out.update(ours_random_samples_per_s=med(sps["ours_random"]), ours_random_eval_loss=med(loss["ours_random"]),
                   ours_random_recorded_eval_loss=recorded["ours_random"],
                   tool_overhead_ratio=med([o / b for o, b in zip(sps["ours_random"], sps["baseline"])]),
                   sampler_gain=med([o / b for o, b in zip(sps["ours"], sps["ours_random"])]))
    return out


def markdown(machine: dict, summaries: list[dict], stats: dict) -> str:
    return "\n".join([
        f"P4 training throughput: {machine['cpu_count']} CPUs, {machine['platform']}, torch {machine['torch']}, "
        f"transformers {machine['transformers']}, {machine['threads_per_side']} threads per side", "",
        *throughput_table(summaries), "", *loss_table(summaries), "", *ablation_table(summaries),
        *data_table(stats), "",
        "Samples/s: HF's train_samples_per_second (train_runtime includes the one eval at the last step, on both "
        "sides); train-only leaves that eval out. Ratios: median of per-round ratios. Eval loss: median over "
        "seeds of the token-weighted loss of each final model (same scorer for both sides); 'recorded' is the "
        "eval_loss each side logged (HF's mean of per-batch means). Other processes' load during any run: at most "
        f"{max(s['max_other_load_cores'] for s in summaries):.2f} cores "
        f"({sum(s['retried_runs'] for s in summaries)} run(s) re-run after a disturbance).", *disturbed_warning(summaries)])


def disturbed_warning(summaries: list[dict]) -> list[str]:
    count = sum(s["disturbed_runs"] for s in summaries)
    return ["", f"WARNING: {count} run(s) kept despite other processes using >= {QUIET_CORES} cores: "
            "these figures are not reliable; re-run on a quiet machine."] if count else []


def throughput_table(summaries: list[dict]) -> list[str]:
    lines = ["| data | runs x steps | ours samples/s | baseline samples/s | ratio ours/baseline (min-max) | goal "
             "| train-only ratio |", "|---|---|---|---|---|---|---|"]
    return lines + [
        f"| {s['dataset']} | {s['runs']} x {s['steps']} | {s['ours_samples_per_s']:.1f} "
        f"| {s['baseline_samples_per_s']:.1f} | **{s['ratio']:.2f}** ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) "
        f"| >= {s['goal_ratio']}: {_mark(s['ratio_ok'])} | {s['train_only_ratio']:.2f} |" for s in summaries]


def loss_table(summaries: list[dict]) -> list[str]:
    lines = ["| data | eval loss ours | eval loss baseline | rel. diff | seed spread | goal: unchanged within noise "
             "| same-seed diffs: median (min..max) | recorded eval_loss ours / baseline |",
             "|---|---|---|---|---|---|---|---|"]
    return lines + [
        f"| {s['dataset']} | {s['ours_eval_loss']:.4f} | {s['baseline_eval_loss']:.4f} "
        f"| {s['eval_loss_rel_diff']:+.1%} | {s['eval_loss_seed_spread']:.1%} | {_mark(s['eval_loss_ok'])} "
        f"| {s['eval_loss_paired_median']:+.1%} ({min(s['eval_loss_paired_diffs']):+.1%}.."
        f"{max(s['eval_loss_paired_diffs']):+.1%}) "
        f"| {s['ours_recorded_eval_loss']:.4f} / {s['baseline_recorded_eval_loss']:.4f} |" for s in summaries]


def ablation_table(summaries: list[dict]) -> list[str]:
    ablated = [s for s in summaries if "sampler_gain" in s]
    if not ablated:
        return []
    lines = ["| data | ours with random sampler: samples/s | vs baseline (tool overhead) "
             "| ours / ours random (sampler gain) | eval loss (recorded), random sampler |", "|---|---|---|---|---|"]
    return lines + [
        f"| {s['dataset']} | {s['ours_random_samples_per_s']:.1f} | {s['tool_overhead_ratio']:.2f} "
        f"| {s['sampler_gain']:.2f} | {s['ours_random_eval_loss']:.4f} ({s['ours_random_recorded_eval_loss']:.4f}) |"
        for s in ablated] + [""]


def data_table(stats: dict) -> list[str]:
    lines = ["| data | prompt tokens p50 / p90 / p99 / max | real-token share per batch: random -> grouped |",
             "|---|---|---|"]
    for kind, st in stats.items():
        pt = st["prompt_tokens"]
        lines.append(f"| {kind} | {pt['p50']:.0f} / {pt['p90']:.0f} / {pt['p99']:.0f} / {pt['max']} "
                     f"| {st['real_token_share_random']:.0%} -> {st['real_token_share_grouped']:.0%} |")
    return lines


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="p4-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    env = child_env(work)
    machine = machine_info()
    print(f"scratch: {work}\nmachine: {json.dumps(machine)}", flush=True)
    model = prepare_model(work, env)
    kinds = [k.strip() for k in args.datasets.split(",") if k.strip()]
    summaries, stats, raw = [], {}, {}
    for kind in kinds:
        data = write_dataset(work, kind, args.n_train, args.n_eval)
        stats[kind] = length_stats(data, model)
        print(f"{kind}: {json.dumps(stats[kind])}", flush=True)
        raw[kind] = run_pairs(work, env, model, kind, data, args)
        summaries.append(summarize(kind, raw[kind], args.steps))
    table = markdown(machine, summaries, stats)
    print("\n" + table)
    report = {"machine": machine, "hyperparameters": HYPER, "steps": args.steps, "summary": summaries,
              "data": stats, "runs": raw, "markdown": table, "command": " ".join(sys.argv)}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\nJSON: {args.out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
