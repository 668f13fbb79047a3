"""GPU throughput benchmark: the tool's training configurations against a plain Seq2SeqTrainer script.

Run it from the repository root, on one GPU (H100/H200; about 8 minutes with the defaults, most
of it process start-up, loading 11 GB of weights and the checkpoints the tool writes):

    python bench/gpu_throughput.py --out /tmp/gpu_throughput.json

and on CPU as a smoke test (tiny shapes, a few minutes on 2 cores):

    python bench/gpu_throughput.py --shape tiny --steps 6 --batch 2 --src_len 64 --tgt_len 16 \
        --configs baseline,tool-nods,tool-zero2,tool-lora

What it does:

1. Builds a T5 offline in a scratch mount (``WF_MOUNT_DIR``; ``WF_RUNS_DIR`` and ``WF_MLFLOW_DIR``
   point into the same scratch directory): ``--shape xl`` has flan-t5-xl's dimensions (d_model
   2048, d_ff 5120, 32 heads x 64, 24 + 24 layers, vocab 32128, gated-gelu, untied head; 2.85B
   parameters), random weights, built on the GPU in bf16 (in a child process, so this process
   never holds GPU memory) and saved in fp32 like google/flan-t5-xl (``--save_dtype``): every side
   then loads fp32 weights and trains with bf16 autocast (fp32 master weights), the setup DeepSpeed's
   bf16 mode and the memory planner model. The LM head is untied from the embedding as in
   flan-t5-xl (transformers 5's T5Config always ties it, which would give 2.78B parameters) and
   drawn with std d_model^-0.5, so the initial loss is about ln(vocab), as for a trained
   checkpoint, instead of ~100. A side that trains another parameter count (e.g. a loader that
   re-ties the head) is flagged in the status column. The tokenizer is a sentencepiece model
   trained offline with ``workflow.demo`` on the demo lexicon (``workflow.demo.LEXICON``); the
   model's vocabulary stays 32128 (all ids are below it). ``--shape tiny``: d_model 64, d_ff 128,
   2 heads x 32, 2 + 2 layers, vocab 32128 (4.3M parameters).
2. Generates data: prompts of random lexicon words, each at least ``--src_len`` tokens (truncated
   to exactly ``--src_len`` by every side), completions (word-by-word translations of the prompt's
   first words) of at least ``--tgt_len`` tokens; so every batch is full length and the sides
   cannot differ by padding.
3. Runs each side with the same micro batch, steps, seed, learning rate and data, bf16 on GPU
   (fp32 on CPU), one process at a time:

   - ``baseline``: ``bench/gpu_baseline.py``, a plain ``Seq2SeqTrainer`` script (fused AdamW, no
     DeepSpeed);
   - ``tool-nods`` / ``tool-zero2`` / ``tool-zero3`` / ``tool-lora`` (r=16) / ``tool-qlora``
     (r=16, 4-bit base): the tool through its CLI, ``python launch.py run <spec> key=value...``
     (local backend, ``resources.gpus_per_node=1``, ``train.group_by_length=false``); results are
     read from the point's ``metrics.jsonl``. QLoRA needs a GPU and bitsandbytes: skipped (with
     the reason) otherwise.

   For each tool configuration the memory planner's per-GPU figure
   (``workflow.launch.memory.estimate(...).chosen.total_gb``, for one GPU of unknown type) is shown next
   to the measured peak.

Measured per side:

- samples/s: throughput after the first logging interval (``logging_steps`` = steps / 6, i.e.
  10 of 60 steps of warm-up), between the first and the last loss log. The tool logs
  ``samples_per_second`` per logging interval (``workflow/node/hf.py`` TrackingCallback); the baseline
  times the same interval with a callback. Each loss log syncs the GPU (``.item()``), so the
  figures are real. Also shown: HF's ``train_samples_per_second`` over the whole ``train()``
  (the tool's ``train_samples_per_second_avg``): it includes the first steps, the eval at the last
  step and, for the tool, the checkpoint the HF Trainer always writes at the last step when
  ``save_strategy`` is "steps" (even with ``save_steps`` > ``max_steps``; for xl under ZeRO that
  checkpoint is about 45 GB, see the ``ckpt GiB`` column). The baseline saves nothing.
- MFU = samples/s x model FLOPs per sample / peak FLOP/s (``--peak_tflops``, default 989: H100 SXM
  and H200 dense bf16). Model FLOPs per sample (``bench/flops.py``): 3 x the forward's matmul and
  attention FLOPs (2 FLOPs per multiply-accumulate), encoder at src_len, decoder at tgt_len, the
  LM head at tgt_len; 2 x the forward for LoRA/QLoRA (frozen weights get no weight gradients).
  For xl at 512/128: 1.824 TFLOP forward, 5.472 TFLOP per training sample (3.648 under LoRA).
- peak GPU memory: ``torch.cuda.max_memory_reserved()`` / 2**30 after training (the tool's
  ``gpu_peak_memory_gb`` metric, when it logs it), against the plan's figure.
- eval loss on the fixed eval split at the last step, and its relative difference from the
  baseline's.

Goals (printed with met / NOT met): ZeRO-2 >= 0.9 x baseline samples/s, ZeRO-3 >= 0.7 x, the
fastest tool configuration >= 25% MFU, eval loss within 2% of the baseline's for the full
fine-tuning configurations (LoRA trains other parameters: its loss is shown, not judged).

Output: a markdown table on stdout (also after each side, so a cut-off run still shows what it
measured) and JSON at ``--out`` (rewritten after each side). Model folders, run directories and
checkpoints are deleted after each side (``--keep`` keeps them). A side that fails prints its exit
code and the tail of its log, and the other sides still run; a tool side that fails after training
(e.g. disk full while writing the last-step checkpoint) keeps its figures, with status "partial".
``--budget_s`` (default 560 on GPU) skips the sides that would start too late to finish before a
hard time limit. The run directories need about 20 bytes per parameter of free disk (53 GiB for
xl: that checkpoint plus the final model); when the scratch disk has less, /dev/shm is used if it
has enough (``--runs_dir`` chooses).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from flops import XL, mfu, train_flops_per_sample  # noqa: E402
from workflow.rundir import read_json  # noqa: E402

BASELINE = REPO / "bench" / "gpu_baseline.py"
GIB = 2 ** 30
VOCAB = 32128
SHAPES = {
    "xl": dict(d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24),
    "tiny": dict(d_model=64, d_ff=128, d_kv=32, num_heads=2, num_layers=2, num_decoder_layers=2),
}
assert all(SHAPES["xl"][k] == XL[k] for k in SHAPES["xl"])
NODS, ZERO2, ZERO3 = ["deepspeed.enabled=false"], ["deepspeed.enabled=true", "deepspeed.stage=2"], \
    ["deepspeed.enabled=true", "deepspeed.stage=3"]
FAST = ["speed.attention=flex_attention", "speed.fused_rms_norm=true", "speed.compile=true"]
CONFIGS = {  # tool configurations: CLI overrides. Each variant is a spec option, checked on CPU first
    # (tests/integration/test_speed_options.py: the default's loss within 1e-3 over 20 steps).
    "tool-nods": NODS,
    "tool-zero2": ZERO2,
    "tool-zero3": ZERO3,
    "tool-lora": [*NODS, "lora.r=16"],
    # where an xl step goes: attention (sdpa with the position bias as a mask -> FlexAttention with
    # it in the score_mod), layer norm (24+24 layers x 2-3 norms of Python arithmetic -> one kernel),
    # everything per block (regional compile fuses the elementwise work around the matmuls)
    "tool-flex": [*NODS, "speed.attention=flex_attention"],
    "tool-rmsnorm": [*NODS, "speed.fused_rms_norm=true"],
    "tool-compile": [*NODS, "speed.compile=true"],
    "tool-fast": [*NODS, *FAST],
    # ZeRO hooks and buckets: auto buckets are d_model^2 = 4.2M elements (~680 a step at xl)
    "tool-zero2-buckets": [*ZERO2, "deepspeed.reduce_bucket_size=500000000",
                           "deepspeed.allgather_bucket_size=500000000"],
    "tool-zero2-fast": [*ZERO2, "deepspeed.reduce_bucket_size=500000000", "deepspeed.allgather_bucket_size=500000000",
                        *FAST],
    "tool-zero3-resident": [*ZERO3, "deepspeed.stage3_param_persistence_threshold=100000000",
                            "deepspeed.stage3_prefetch_bucket_size=500000000",
                            "deepspeed.stage3_max_live_parameters=3000000000"],
    # activations: twice the micro batch with activation checkpointing (the batch the side reports
    # its samples/s for is its own)
    "tool-fast-ckpt-2x": [*NODS, *FAST, "train.gradient_checkpointing=true", "train.train_batch_size=2x"],
    "tool-lora-fast": [*NODS, "lora.r=16", *FAST],
    "tool-qlora": [*NODS, "lora.r=16", "lora.quantize=4bit"],
}
ALL = ["baseline", *CONFIGS]
# the session's order: the reference points first, then the variants by their expected gain
TOURNAMENT = ["baseline", "tool-nods", "tool-fast", "tool-zero2", "tool-zero2-fast", "tool-compile", "tool-flex",
              "tool-rmsnorm", "tool-zero2-buckets", "tool-zero3", "tool-zero3-resident", "tool-fast-ckpt-2x",
              "tool-lora", "tool-lora-fast"]
LORA = {"tool-lora", "tool-lora-fast", "tool-qlora"}
FULL = {"baseline", *(c for c in CONFIGS if c not in LORA and "2x" not in c)}  # eval loss judged (same global batch)
GOAL_RATIO = {"tool-zero2": 0.9, "tool-zero3": 0.7}
GOAL_MFU = 0.25
GOAL_LOSS = 0.02
MIN_SIDE_S = 45  # a side is not started with less time than this left in --budget_s


def parse_args(argv=None) -> argparse.Namespace:
    cuda = _cuda_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="xl" if cuda else "tiny")
    p.add_argument("--steps", type=int, default=60, help="max_steps of every side")
    p.add_argument("--batch", type=int, default=8, help="micro batch (per GPU) of every side")
    p.add_argument("--src_len", type=int, default=512, help="prompt tokens per example (after truncation)")
    p.add_argument("--tgt_len", type=int, default=128, help="completion tokens per example (after truncation)")
    p.add_argument("--configs", default=",".join(ALL), help="comma-separated subset of: " + ", ".join(ALL)
                   + "; 'tournament': " + ",".join(TOURNAMENT))
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of every side")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--n_eval", type=int, default=None, help="eval examples (default: 2 x batch)")
    p.add_argument("--max_new_tokens", type=int, default=8, help="the tool's generation on the eval split")
    p.add_argument("--peak_tflops", type=float, default=989.0,
                   help="peak dense bf16 TFLOP/s for MFU (H100 SXM and H200: 989; H100 PCIe: 756; A100: 312)")
    p.add_argument("--save_dtype", choices=["fp32", "bf16"], default="fp32",
                   help="dtype of the saved model (fp32 like google/flan-t5-xl; bf16 makes the non-DeepSpeed "
                        "sides train pure bf16, without fp32 master weights)")
    p.add_argument("--tool_override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override for every tool configuration (repeatable)")
    p.add_argument("--budget_s", type=float, default=560.0 if cuda else 0.0,
                   help="skip sides that would start later than this many seconds after the start (0: no limit)")
    p.add_argument("--side_timeout", type=float, default=480.0, help="seconds before a side is stopped")
    p.add_argument("--out", default="/tmp/gpu_throughput.json", help="JSON results")
    p.add_argument("--work_dir", help="scratch directory (default: a new one under $TMPDIR)")
    p.add_argument("--runs_dir", help="WF_RUNS_DIR (default: <work_dir>/runs, or /dev/shm when the work dir's "
                                      "disk is too small for the checkpoint the Trainer writes at the end)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory, models and run directories")
    p.add_argument("--save", action="store_true",
                   help="let the tool's sides write their last-step checkpoint and final model (default: "
                        "train.save=false, a throughput probe: 45 GB less to write per xl ZeRO side)")
    p.add_argument("--md", help="write the markdown table here too (default: --out with .md)")
    p.add_argument("--build_model", help=argparse.SUPPRESS)  # child mode: build the model into this folder
    a = p.parse_args(argv)
    a.config_list = TOURNAMENT if a.configs == "tournament" else [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in a.config_list if c not in ALL]
    if unknown:
        p.error(f"unknown config(s) {', '.join(unknown)}; known: {', '.join(ALL)}")
    a.n_eval = a.n_eval or 2 * a.batch
    a.log_every = max(1, a.steps // 6)
    if a.steps < 2 * a.log_every:
        p.error("--steps must allow at least two loss logs")
    return a


def scratch(cuda: bool) -> str | None:
    """Where the model and data are built: /dev/shm on a GPU box with room for an xl model in fp32
    (every side then loads 11 GB from memory, not the disk); else $TMPDIR."""
    shm = Path("/dev/shm")
    return str(shm) if cuda and shm.is_dir() and free_gib(shm) > 40 else None


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()  # no CUDA context is created here
    except ImportError:
        return False


# ---------------------------------------------------------------- model, tokenizer and data

def lexicon() -> dict[str, str]:
    from workflow.demo import LEXICON

    return {src: tgt for table in LEXICON for src, tgt in table.items()}


def make_records(n: int, words_in: int, words_out: int, rng: random.Random) -> list[dict]:
    """Prompts of ``words_in`` random lexicon words; completions translate the first ``words_out``."""
    table = lexicon()
    vocab = sorted(table)
    out = []
    for _ in range(n):
        prompt = [rng.choice(vocab) for _ in range(words_in)]
        out.append({"prompt": "translate: " + " ".join(prompt),
                    "completion": " ".join(table[w] for w in prompt[:words_out])})
    return out


def build_tokenizer(model_dir: Path, sample: list[dict]):
    """A sentencepiece T5 tokenizer trained offline on the lexicon and sample records."""
    from workflow import demo

    table = lexicon()
    words = sorted(set(table) | set(table.values()))
    texts = [r[k] for r in sample for k in ("prompt", "completion")] + words * 20
    tokenizer = demo.make_tokenizer(demo.train_pieces(texts, vocab_size=512))
    tokenizer.save_pretrained(model_dir)
    return tokenizer


def write_data(path: Path, tokenizer, a: argparse.Namespace) -> dict:
    """The data file; checks every prompt reaches src_len tokens and every completion tgt_len."""
    rng = random.Random(a.seed)
    n_train = max(a.steps * a.batch, 4 * a.batch)
    words_in, words_out = a.src_len + 8, a.tgt_len + 8  # a word is at least one token
    data = {"train": make_records(n_train, words_in, words_out, rng),
            "eval": make_records(a.n_eval, words_in, words_out, rng)}
    lengths = {}
    for split, records in data.items():
        src = [len(ids) for ids in tokenizer([r["prompt"] for r in records])["input_ids"]]
        tgt = [len(ids) for ids in tokenizer(text_target=[r["completion"] for r in records])["input_ids"]]
        if min(src) < a.src_len or min(tgt) < a.tgt_len:
            raise RuntimeError(f"{split}: prompts of {min(src)} tokens or completions of {min(tgt)} tokens, "
                               f"below {a.src_len}/{a.tgt_len}")
        unk = sum(tokenizer.unk_token_id in ids for ids in tokenizer([r["prompt"] for r in records[:50]])["input_ids"])
        if unk:
            raise RuntimeError(f"{split}: the tokenizer maps part of {unk} prompts to <unk>")
        lengths[split] = {"examples": len(records), "prompt_tokens_min": min(src), "prompt_tokens_max": max(src),
                          "completion_tokens_min": min(tgt), "completion_tokens_max": max(tgt)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return lengths


def build_model(out_dir: str, shape: str, save_dtype: str) -> None:
    """Child mode: a random T5 of the given shape, built on the GPU in bf16 when there is one,
    saved (weights and config) into ``out_dir`` in ``save_dtype``."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, T5Config

    start = time.perf_counter()
    cuda = torch.cuda.is_available()
    config = T5Config(vocab_size=VOCAB, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.1,
                      **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForSeq2SeqLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
        # transformers 5.x's T5Config always ties the head to the embedding (tie_word_embeddings=False only
        # turns off the decoder-output scaling), which would give 2.78B parameters instead of flan-t5-xl's
        # 2.85B. Untie it as in flan-t5-xl, with std d_model^-0.5: the initial loss is then ~ln(vocab), not ~100.
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * config.d_model ** -0.5)
    model.config.tie_word_embeddings = False  # saved as in flan-t5-xl's config.json; both matrices are saved
    built = time.perf_counter() - start
    model.to({"fp32": torch.float32, "bf16": torch.bfloat16}[save_dtype])
    model.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": params, "device": str(next(model.parameters()).device), "build_s": built,
                      "total_s": time.perf_counter() - start, "dtype": save_dtype}), flush=True)


def dir_gib(path: Path) -> float:
    if not path.exists():
        return 0.0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / GIB


def free_gib(path: Path) -> float:
    try:
        return shutil.disk_usage(path).free / GIB
    except OSError:
        return 0.0


# ---------------------------------------------------------------- processes

def run_logged(argv: list[str], env: dict, log: Path, timeout: float, runs_dir: Path | None = None) -> dict:
    """Run a command from the repo root with its output in ``log``; stop it after ``timeout`` s
    (SIGINT first: the launcher then stops its job; then SIGKILL what is left)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, timeout))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc, runs_dir)
            code = proc.returncode
        except KeyboardInterrupt:  # the child runs in its own session: stop it too
            _stop(proc, runs_dir)
            raise
    return {"code": code, "timed_out": timed_out, "wall_s": time.perf_counter() - start}


def _stop(proc: subprocess.Popen, runs_dir: Path | None) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    # the local backend starts the job in its own session: its pid is in the point's state.json
    for state in (runs_dir.glob("*/state.json") if runs_dir else []):
        try:
            pid = int(json.loads(state.read_text()).get("pid") or 0)
            if pid:
                os.killpg(pid, signal.SIGKILL)
        except (ValueError, OSError):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def tool_uses_fused_adam_op() -> bool:
    """Whether the tool's ZeRO config (without offload) leaves DeepSpeed its own FusedAdam (a CUDA op
    JIT-compiled with nvcc on first use) rather than torch's fused AdamW (``torch_adam``)."""
    try:
        from workflow.node.zero import deepspeed_config
        from workflow.spec import DeepSpeedSpec

        ds = DeepSpeedSpec(enabled=True, stage=2)
        return not deepspeed_config(ds).get("optimizer", {}).get("params", {}).get("torch_adam", False)
    except Exception:
        return True


def prebuild_fused_adam(env: dict, log: Path) -> subprocess.Popen:
    """DeepSpeed JIT-compiles FusedAdam (ZeRO's optimizer on GPU) on first use; build it into
    the shared extension cache now, while the model is built, instead of inside a ZeRO side."""
    code = ("import os, time; t = time.time()\n"
            "try:\n    from workflow.node.cuda_arch import fix_environment; fix_environment(os.environ)\n"
            "except Exception as exc: print('cuda_arch:', exc)\n"
            "from deepspeed.ops.op_builder import FusedAdamBuilder\n"
            "FusedAdamBuilder().load(); print(f'FusedAdam ready in {time.time() - t:.0f} s')\n")
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=handle,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- sides

class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.start = time.perf_counter()
        self.cuda = _cuda_available()
        self.work = Path(a.work_dir or tempfile.mkdtemp(prefix="gpu-throughput-", dir=scratch(self.cuda))).resolve()
        self.mount = self.work / "mount"
        self.model_name = f"{a.shape}-shaped"
        self.model_dir = self.mount / "models" / self.model_name
        self.data_path = self.mount / "data" / "gpu-throughput.json"
        self.logs = self.work / "logs"
        self.specs = self.work / "specs"
        for folder in (self.logs, self.specs, self.model_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.runs = Path(a.runs_dir).resolve() if a.runs_dir else self.work / "runs"
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.env.update(WF_MOUNT_DIR=str(self.mount), WF_RUNS_DIR=str(self.runs),
                        WF_MLFLOW_DIR=str(self.work / "mlflow"),
                        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                        PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
                            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        self.results: dict[str, dict] = {}
        self.info: dict = {}
        self.cfg: dict = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():6.0f} s] {text}", flush=True)

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        a = self.a
        configs = a.config_list
        builder = None
        if self.cuda and any(c in ("tool-zero2", "tool-zero3") for c in configs):
            if tool_uses_fused_adam_op():
                builder = prebuild_fused_adam(self.env, self.logs / "fused_adam.log")
                self.say("building DeepSpeed's FusedAdam in the background")
            else:
                self.say("the tool's DeepSpeed config uses torch's fused AdamW: no FusedAdam JIT build")
        rng = random.Random(a.seed)
        tokenizer = build_tokenizer(self.model_dir, make_records(200, 60, 20, rng))
        self.info["data"] = write_data(self.data_path, tokenizer, a)
        self.info["tokenizer_size"] = len(tokenizer)
        self.say(f"data: {json.dumps(self.info['data'])}; tokenizer {len(tokenizer)} tokens")
        where = "GPU, bf16" if self.cuda else "CPU, fp32"
        self.say(f"building the {a.shape}-shaped T5 ({where}; saved {a.save_dtype})")
        build = run_logged([sys.executable, str(Path(__file__).resolve()), "--shape", a.shape, "--save_dtype",
                            a.save_dtype, "--build_model", str(self.model_dir)], self.env,
                           self.logs / "build_model.log", timeout=300)
        if build["code"] != 0:
            raise RuntimeError(f"model build failed (exit {build['code']}):\n{tail(self.logs / 'build_model.log')}")
        built = json.loads(next(line for line in reversed((self.logs / "build_model.log").read_text().splitlines())
                                if line.startswith('{"parameters"')))
        self.info["model"] = {**built, "wall_s": build["wall_s"], "disk_gib": dir_gib(self.model_dir)}
        self.cfg = json.loads((self.model_dir / "config.json").read_text())
        self.say(f"model: {_count(built['parameters'])} parameters, built on {built['device']} in "
                 f"{built['build_s']:.0f} s, saved in {build['wall_s']:.0f} s "
                 f"({self.info['model']['disk_gib']:.1f} GiB)")
        if builder is not None:
            try:
                code = builder.wait(timeout=300)
            except subprocess.TimeoutExpired:  # not killed: a killed JIT build leaves its lock file behind
                code = "still running after 300 s"
            self.info["fused_adam"] = {"code": code, "log": tail(self.logs / "fused_adam.log", 5)}
            if code == 0:
                self.say(f"DeepSpeed FusedAdam: {tail(self.logs / 'fused_adam.log', 1)}")
            else:
                self.say(f"WARNING: DeepSpeed's FusedAdam did not build (exit {code}); the ZeRO sides will "
                         f"likely fail the same way:\n{tail(self.logs / 'fused_adam.log', 15)}")
        self.pick_runs_dir()
        self.write_spec()

    def pick_runs_dir(self) -> None:
        """The Trainer writes a full checkpoint at the last step (about 16 bytes per parameter under
        ZeRO, plus the final model): put the run directories where that fits."""
        need = (20 if self.a.save else 0) * self.info["model"]["parameters"] / GIB + 1
        self.info["runs_dir_need_gib"] = need
        if self.a.runs_dir is None and self.cuda and free_gib(self.work) < need:
            shm = Path("/dev/shm")
            if free_gib(shm) >= need:
                self.runs = Path(tempfile.mkdtemp(prefix="gpu-throughput-runs-", dir=shm))
                self.env["WF_RUNS_DIR"] = str(self.runs)
        self.runs.mkdir(parents=True, exist_ok=True)
        free = free_gib(self.runs)
        self.info["runs_dir"], self.info["runs_dir_free_gib"] = str(self.runs), free
        warn = "" if free >= need else f" (WARNING: under the ~{need:.0f} GiB a ZeRO side's final checkpoint needs)"
        self.say(f"run directories in {self.runs}: {free:.0f} GiB free{warn}; scratch {self.work}: "
                 f"{free_gib(self.work):.0f} GiB free")

    def common_train(self) -> dict:
        a = self.a
        return {"learning_rate": a.lr, "warmup_steps": max(1, a.steps // 10), "max_steps": a.steps,
                "train_batch_size": a.batch, "eval_batch_size": a.batch, "seed": a.seed,
                "max_source_length": a.src_len, "max_target_length": a.tgt_len, "logging_steps": a.log_every}

    def write_spec(self) -> None:
        a = self.a
        train = {**self.common_train(), "save_steps": 10 * a.steps, "save_total_limit": 1, "eval_steps": a.steps}
        self.spec = {"task": "seq2seq", "model_init_name": self.model_name, "data_name": self.data_path.name,
                     "train": train, "generate": {"max_new_tokens": a.max_new_tokens},
                     "resources": {"cpus_per_task": os.cpu_count() or 1, "mem_gb": 64, "timeout_min": 30},
                     "tracking": {"experiment": "gpu-throughput"}}

    def tool_overrides(self, config: str) -> list[str]:
        gpu = self.cuda
        own = [o.replace("=2x", f"={2 * self.a.batch}") for o in CONFIGS[config]]
        return [f"resources.gpus_per_node={1 if gpu else 0}", f"train.precision={'bf16' if gpu else 'fp32'}",
                "train.group_by_length=false", *([] if self.a.save else ["train.save=false"]), *own,
                *self.a.tool_override]

    def batch_of(self, config: str) -> int:
        """The micro batch a side trains with (its samples/s counts its own samples)."""
        return 2 * self.a.batch if any(o.endswith("=2x") for o in CONFIGS.get(config, [])) else self.a.batch

    # ------------------------------------------------------------ plan

    def plan_gib(self, config: str) -> tuple[float | None, str | None]:
        """The planner's per-GPU figure for this configuration on one GPU of unknown type."""
        try:
            from workflow.launch import memory
            from workflow.launch.config import load_spec

            path = self.specs / f"{config}.yaml"
            if not path.exists():
                path.write_text(json.dumps(self.spec, indent=1))
            overrides = [o for o in self.tool_overrides(config) if not o.startswith("resources.gpus_per_node=")]
            spec = load_spec(path, [*overrides, "resources.gpus_per_node=1", "resources.gpu_type=",
                                    "resources.gpu_mem_gb=", "model_init_name=", f"model_init_path={self.model_dir}"])
            est = memory.estimate(spec)
            return (est.chosen.total_gb if est else None), (est.chosen.label if est else None)
        except Exception as exc:  # the planner's answer is informative; a failure must not stop the benchmark
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    # ------------------------------------------------------------ runs

    def remaining(self) -> float | None:
        return None if not self.a.budget_s else self.a.budget_s - self.elapsed()

    def run_side(self, config: str) -> dict:
        left = self.remaining()
        if left is not None and left < MIN_SIDE_S:
            return {"status": "skipped",
                    "reason": f"time budget: {left:.0f} s left of --budget_s {self.a.budget_s:.0f}"}
        timeout = self.a.side_timeout if left is None else min(self.a.side_timeout, left)
        if config == "tool-qlora":
            reason = self.qlora_unavailable()
            if reason:
                return {"status": "skipped", "reason": reason}
        if config == "baseline":
            return self.run_baseline(timeout)
        return self.run_tool(config, timeout)

    def qlora_unavailable(self) -> str | None:
        if not self.cuda:
            return "QLoRA needs a GPU (bitsandbytes; the tool refuses lora.quantize on CPU-only resources)"
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            return "bitsandbytes is not installed (pip install bitsandbytes)"
        return None

    def run_baseline(self, timeout: float) -> dict:
        a = self.a
        out_dir = self.runs / "baseline"
        result_path = self.work / "baseline.json"
        result_path.unlink(missing_ok=True)
        train = self.common_train()
        argv = [sys.executable, str(BASELINE), "--model", str(self.model_dir), "--data", str(self.data_path),
                "--output_dir", str(out_dir), "--result_json", str(result_path),
                f"--learning_rate={train['learning_rate']}", f"--warmup_steps={train['warmup_steps']}",
                f"--max_steps={a.steps}", f"--batch_size={a.batch}", f"--eval_batch_size={a.batch}",
                f"--logging_steps={a.log_every}", f"--max_source_length={a.src_len}",
                f"--max_target_length={a.tgt_len}", f"--seed={a.seed}"]
        env = {**self.env, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}  # what the tool's local backend sets
        log = self.logs / "baseline.log"
        call = run_logged(argv, env, log, timeout)
        side = {"command": " ".join(argv), **call, "log": str(log)}
        if call["code"] == 0 and result_path.is_file():
            got = json.loads(result_path.read_text())
            side.update(status="ok", samples_per_second=got["samples_per_second"],
                        hf_samples_per_second=got["train_samples_per_second"], train_runtime=got["train_runtime"],
                        eval_loss=got["eval_loss"], gpu_peak_memory_gb=got["gpu_peak_memory_gb"],
                        model_dtype=got.get("model_dtype"), optim=got.get("optim"), parameters=got.get("parameters"))
        else:
            side.update(status="failed", reason=_failure(call), log_tail=tail(log))
        if not self.a.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
        return side

    def run_tool(self, config: str, timeout: float) -> dict:
        spec_path = self.specs / f"{config}.yaml"  # the file name is the sweep name: runs/<config>/<point>
        spec_path.write_text(json.dumps(self.spec, indent=1))  # JSON is YAML
        overrides = self.tool_overrides(config)
        sweep_dir = self.runs / config
        shutil.rmtree(sweep_dir, ignore_errors=True)  # a fresh point, never "already done"
        argv = [sys.executable, "launch.py", "run", str(spec_path), *overrides]
        log = self.logs / f"{config}.log"
        call = run_logged(argv, self.env, log, timeout, sweep_dir)
        side = {"command": " ".join(argv), **call, "log": str(log)}
        point = next(iter(sorted(sweep_dir.glob("*/job.json"))), None)
        point_dir = point.parent if point else None
        metrics = read_metrics(point_dir / "metrics.jsonl") if point_dir else {}
        if point_dir:
            side.update(point_log=str(point_dir / "log.txt"), checkpoint_gib=dir_gib(point_dir / "checkpoints"),
                        final_model_gib=dir_gib(point_dir / "model"))
        steady = steady_samples_per_second(metrics, self.batch_of(config))
        trained = steady is not None and "eval_loss" in metrics  # the eval runs at the last step only
        if trained:  # also when the job failed afterwards (e.g. writing the last-step checkpoint)
            side.update(samples_per_second=steady,
                        hf_samples_per_second=_last(metrics, "train_samples_per_second_avg"),
                        train_runtime=_last(metrics, "train_runtime"), eval_loss=_last(metrics, "eval_loss"),
                        gpu_peak_memory_gb=_last(metrics, "gpu_peak_memory_gb"),
                        parameters=_int(_param(point_dir, "model.parameters")),
                        trainable_parameters=_int(_param(point_dir, "model.trainable_parameters")))
        if call["code"] == 0 and trained:
            side["status"] = "ok"
        else:
            error = (read_json(point_dir / "state.json") if point_dir else {}).get("error")
            reason = _failure(call) + (f": {error}" if error else "")
            side.update(status="partial" if trained else "failed", reason=reason,
                        log_tail=tail(point_dir / "log.txt") if point_dir and (point_dir / "log.txt").exists()
                        else tail(log), launcher_tail=tail(log, 12))
        if not self.a.keep:
            shutil.rmtree(sweep_dir, ignore_errors=True)
        return side

    # ------------------------------------------------------------ report

    def summarize(self) -> dict:
        a = self.a
        flops_full = train_flops_per_sample(self.cfg, a.src_len, a.tgt_len) if self.cfg else None
        flops_lora = train_flops_per_sample(self.cfg, a.src_len, a.tgt_len, lora=True) if self.cfg else None
        base = self.results.get("baseline", {})
        base_sps = base.get("samples_per_second") if _measured(base) else None
        base_hf = base.get("hf_samples_per_second") if _measured(base) else None
        base_loss = base.get("eval_loss") if _measured(base) else None
        rows = []
        for config in a.config_list:
            r = self.results.get(config)
            if r is None:
                continue
            row = {"config": config, **r}
            built = self.info.get("model", {}).get("parameters")
            if _measured(r) and r.get("parameters") and built and r["parameters"] != built:
                row["note"] = f"trained {_count(r['parameters'])} parameters, built {_count(built)}"
            if _measured(r):
                flops = flops_lora if config in LORA else flops_full
                row["flops_per_sample"] = flops
                row["mfu"] = mfu(r["samples_per_second"], flops, a.peak_tflops) if flops else None
                row["hf_mfu"] = mfu(r["hf_samples_per_second"], flops, a.peak_tflops) if flops and r.get(
                    "hf_samples_per_second") else None
                if base_sps and config != "baseline":
                    row["ratio"] = r["samples_per_second"] / base_sps
                    row["hf_ratio"] = r["hf_samples_per_second"] / base_hf if base_hf and r.get(
                        "hf_samples_per_second") else None
                if base_loss and config != "baseline":
                    row["eval_loss_rel_diff"] = (r["eval_loss"] - base_loss) / base_loss
            rows.append(row)
        return {"rows": rows, "goals": self.goals(rows), "flops_per_sample": flops_full,
                "lora_flops_per_sample": flops_lora}

    def goals(self, rows: list[dict]) -> list[dict]:
        by = {r["config"]: r for r in rows}
        out = []
        for config, goal in GOAL_RATIO.items():
            r = by.get(config, {})
            ratio = r.get("ratio")
            out.append({"goal": f"{config} >= {goal}x baseline samples/s", "value": ratio,
                        "met": None if ratio is None else ratio >= goal,
                        "shown": f"{ratio:.2f}x" if ratio is not None else _why_missing(r, by)})
        tools = [r for r in rows if r["config"] != "baseline" and _measured(r)]
        if not self.cuda:
            out.append({"goal": f"fastest tool config >= {GOAL_MFU:.0%} MFU", "value": None, "met": None,
                        "shown": "not judged on CPU"})
        elif tools:
            fastest = max(tools, key=lambda r: r["samples_per_second"])
            best = max(tools, key=lambda r: r.get("mfu") or 0)
            shown = f"{fastest['config']}: {fastest['mfu']:.1%}"
            if best is not fastest:
                shown += f" (highest MFU: {best['config']} {best['mfu']:.1%})"
            out.append({"goal": f"fastest tool config >= {GOAL_MFU:.0%} MFU", "value": fastest["mfu"],
                        "met": fastest["mfu"] >= GOAL_MFU, "shown": shown, "config": fastest["config"]})
        else:
            out.append({"goal": f"fastest tool config >= {GOAL_MFU:.0%} MFU", "value": None, "met": None,
                        "shown": "no tool config ran"})
        judged = [r for r in rows if r["config"] in FULL - {"baseline"} and r.get("eval_loss_rel_diff") is not None]
        if judged:
            worst = max(judged, key=lambda r: abs(r["eval_loss_rel_diff"]))
            out.append({"goal": f"eval loss within {GOAL_LOSS:.0%} of baseline (full fine-tuning configs)",
                        "value": worst["eval_loss_rel_diff"], "met": abs(worst["eval_loss_rel_diff"]) <= GOAL_LOSS,
                        "shown": ", ".join(f"{r['config']} {r['eval_loss_rel_diff']:+.2%}" for r in judged)})
        else:
            out.append({"goal": f"eval loss within {GOAL_LOSS:.0%} of baseline", "value": None, "met": None,
                        "shown": "no full fine-tuning tool config and baseline both ran"})
        return out

    def markdown(self, summary: dict) -> str:
        a = self.a
        model = self.info.get("model", {})
        gpu = self.info.get("gpu") or "no GPU (CPU run: MFU against a GPU peak means nothing)"
        flops = summary["flops_per_sample"]
        lines = [
            f"GPU throughput: {a.shape}-shaped T5 ({_count(model.get('parameters'))} parameters), "
            f"{a.src_len}/{a.tgt_len} tokens, micro batch {a.batch}, {a.steps} steps, lr {a.lr:g}, seed {a.seed}, "
            f"{'bf16' if self.cuda else 'fp32'}; {gpu}",
            f"MFU peak: {a.peak_tflops:g} TFLOP/s (--peak_tflops); model FLOPs per sample "
            f"{_flop(flops)} (3 x forward; LoRA/QLoRA: 2 x forward, {_flop(summary['lora_flops_per_sample'])})", "",
            "| config | samples/s | vs baseline | MFU | HF avg samples/s (vs baseline) | peak GPU GiB | plan GiB "
            "| eval loss | vs baseline | ckpt GiB | wall s | status |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in summary["rows"]:
            ok = _measured(r)
            lines.append("| " + " | ".join([
                r["config"],
                _f(r.get("samples_per_second"), "{:.2f}") if ok else "-",
                _f(r.get("ratio"), "{:.2f}x") if ok else "-",
                _f(r.get("mfu"), "{:.1%}") if ok else "-",
                (_f(r.get("hf_samples_per_second"), "{:.2f}") + (f" ({r['hf_ratio']:.2f}x)" if r.get("hf_ratio")
                                                                 else "")) if ok else "-",
                _gib(r.get("gpu_peak_memory_gb")),
                _gib(r.get("plan_gib")),
                _f(r.get("eval_loss"), "{:.4f}") if ok else "-",
                _f(r.get("eval_loss_rel_diff"), "{:+.2%}") if ok else "-",
                _f(r.get("checkpoint_gib"), "{:.1f}") if r["config"] != "baseline" else "-",
                _f(r.get("wall_s"), "{:.0f}"),
                r.get("status", "?") + (f": {str(r['reason'])[:90]}" if r.get("reason") else "")
                + (f" ({r['note']})" if r.get("note") else ""),
            ]) + " |")
        lines += ["", "Goals:"]
        for g in summary["goals"]:
            mark = "n/a" if g["met"] is None else "met" if g["met"] else "NOT met"
            lines.append(f"- {g['goal']}: {g['shown']} -> {mark}")
        lines += ["", "samples/s: after the first logging interval (warm-up), between the first and last loss logs; "
                  "MFU from it. HF avg: train_samples_per_second over all of train() (first steps, the last-step eval "
                  "and, for the tool, the checkpoint the Trainer writes at the last step: ckpt GiB). peak GPU: "
                  "max_memory_reserved; plan: the planner's per-GPU estimate (model states + activations). "
                  "LoRA/QLoRA eval loss is not judged (other trainable parameters)."]
        return "\n".join(lines)

    def report(self) -> dict:
        summary = self.summarize()
        table = self.markdown(summary)
        report = {"command": " ".join(sys.argv), "args": {k: v for k, v in vars(self.a).items() if k != "build_model"},
                  "info": self.info, "elapsed_s": self.elapsed(), "results": self.results, **summary,
                  "markdown": table}
        md = Path(self.a.md or Path(self.a.out).with_suffix(".md"))
        try:
            Path(self.a.out).write_text(json.dumps(report, indent=1, default=str))
            md.write_text(table + "\n")
        except OSError as exc:
            print(f"cannot write {self.a.out} / {md}: {exc}", flush=True)
        return report

    def machine(self) -> None:
        self.info["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(), "versions": _versions()}
        if self.cuda:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                      "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
                self.info["gpu"] = out.strip().splitlines()[0] if out.strip() else None
            except (OSError, subprocess.TimeoutExpired):
                self.info["gpu"] = "GPU (nvidia-smi unavailable)"

    def run(self) -> dict:
        a = self.a
        self.machine()
        self.say(f"scratch {self.work}; configs {', '.join(a.config_list)}; {json.dumps(self.info['machine'])}; "
                 f"GPU: {self.info.get('gpu')}")
        self.say(f"MFU peak: {a.peak_tflops:g} TFLOP/s (--peak_tflops; 989 = H100 SXM / H200 dense bf16)")
        try:
            self.setup()
        except Exception as exc:
            print(f"SETUP FAILED: {exc}", flush=True)
            self.info["setup_error"] = str(exc)
            self.report()
            raise
        for config in a.config_list:
            # the baseline is the setup of tool-nods (no DeepSpeed, full fine-tuning): the same plan
            plan, label = self.plan_gib("tool-nods" if config == "baseline" else config)
            self.say(f"{config}: starting" + (f" (plan: {plan:.2f} GiB/GPU, {label})" if plan is not None else
                                             f" (plan: {label})" if label else ""))
            side = self.run_side(config)
            side.update(plan_gib=plan, plan_label=label)
            self.results[config] = side
            if _measured(side):
                self.say(f"{config}: {side['samples_per_second']:.2f} samples/s, eval loss {side['eval_loss']:.4f}, "
                         f"peak {_f(side.get('gpu_peak_memory_gb'), '{:.1f}')} GiB, wall {side['wall_s']:.0f} s"
                         + (f", checkpoint written at the last step {side['checkpoint_gib']:.1f} GiB"
                            if side.get("checkpoint_gib") else ""))
            built = self.info.get("model", {}).get("parameters")
            if _measured(side) and side.get("parameters") and built and side["parameters"] != built:
                self.say(f"WARNING: {config} trained {side['parameters']:,} parameters, but the model saved has "
                         f"{built:,} (a tied or dropped LM head?): its loss is not that of the same model")
            if side["status"] == "skipped":
                self.say(f"{config}: SKIPPED: {side['reason']}")
            elif side["status"] != "ok":
                what = "FAILED after training (its figures are kept)" if side["status"] == "partial" else "FAILED"
                self.say(f"{config}: {what}: {side['reason']}; log {side.get('point_log') or side['log']}, "
                         f"its tail:\n{side['log_tail']}"
                         + (f"\nlauncher output tail:\n{side['launcher_tail']}" if side.get("launcher_tail") else ""))
            report = self.report()
            print("\n" + report["markdown"] + "\n", flush=True)
        report = self.report()
        print(f"JSON: {a.out}; total {self.elapsed():.0f} s", flush=True)
        if not a.keep:
            shutil.rmtree(self.work, ignore_errors=True)
            if self.runs != self.work / "runs":
                shutil.rmtree(self.runs, ignore_errors=True)
        return report


# ---------------------------------------------------------------- helpers

def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric row of a point's metrics.jsonl: key -> [(step, value), ...] in file order."""
    out: dict[str, list[tuple[int, float]]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("kind") == "metric":
            out.setdefault(row["key"], []).append((int(row.get("step", 0)), float(row["value"])))
    return out


def steady_samples_per_second(metrics: dict, batch: int) -> float | None:
    """The tool's per-interval samples_per_second rows without the first interval (which also holds
    the set-up between the callback's creation and the first log): total samples / total time."""
    rows = sorted(metrics.get("samples_per_second", []))
    if len(rows) < 2:
        return None
    samples = seconds = 0.0
    for (prev, _), (step, sps) in zip(rows, rows[1:]):
        n = (step - prev) * batch
        samples += n
        seconds += n / sps
    return samples / seconds if seconds else None


def _last(metrics: dict, key: str) -> float | None:
    rows = metrics.get(key)
    return rows[-1][1] if rows else None


def _param(point_dir: Path | None, key: str):
    if not point_dir:
        return None
    value = None
    try:
        for line in (point_dir / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("kind") == "param" and row.get("key") == key:
                value = row["value"]
    except (OSError, json.JSONDecodeError):
        pass
    return value


def _int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _failure(call: dict) -> str:
    return f"timed out after {call['wall_s']:.0f} s" if call["timed_out"] else f"exit code {call['code']}"


def _measured(side: dict) -> bool:
    """A side that trained to the end and has its figures (status ok, or partial: it failed afterwards)."""
    return side.get("status") in ("ok", "partial") and side.get("samples_per_second") is not None


def _why_missing(row: dict, by: dict) -> str:
    if not row:
        return "not run"
    if not _measured(row):
        return f"{row.get('status')}"
    return "no baseline" if not _measured(by.get("baseline", {})) else "n/a"


def _flop(value: float | None) -> str:
    if not value:
        return "-"
    for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if value >= scale:
            return f"{value / scale:.3f} {unit}"
    return f"{value:.0f} FLOP"


def _count(value: int | None) -> str:
    if not value:
        return "?"
    return f"{value / 1e9:.3f}B" if value >= 1e9 else f"{value / 1e6:.2f}M"


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _f(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "deepspeed", "peft", "accelerate", "bitsandbytes"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def main(argv=None) -> dict | None:
    a = parse_args(argv)
    if a.build_model:
        build_model(a.build_model, a.shape, a.save_dtype)
        return None
    return Bench(a).run()


if __name__ == "__main__":
    main()
