#!/usr/bin/env bash
# gpu_session.sh - everything a scarce GPU call measures, in one call under its own time budget:
# the GPU test suite (bounded), then the throughput tournament (bench/gpu_throughput.py: the plain
# Seq2SeqTrainer baseline and the tool's variants, each a short process on one xl-shaped model
# built once in /dev/shm, no checkpoint written). Results go under the results folder as they
# come (a call that is cut keeps what it measured):
#   env.txt                the GPU, driver and package versions
#   gpu-tests.log/.xml     pytest tests/gpu
#   tournament.json/.md    every side's samples/s, ratio to the baseline, MFU, peak memory
#                          against the plan, eval loss against the baseline's, and the goals
#   session.json           what ran, for how long, and with which exit codes
#
# Usage: bash bench/gpu_session.sh [--out DIR] [--budget_s 540] [--tests_s 170] [--shape xl|tiny]
#                                  [--configs tournament|a,b,...] [--no_tests] [-- extra gpu_throughput args]
#   --out       results folder              [$OUT when set (a device call's), else results/gpu-session]
#   --budget_s  the whole call's seconds    [540: a 10-minute call with a minute of margin]
#   --tests_s   at most this on tests/gpu   [170]
#   --shape     xl on a GPU; tiny is the CPU smoke run (a few minutes on 2 cores)
#
# The wheels the GPU image lacks travel in .gpu-carry (bash scripts/gpu-carry.sh); they are
# installed here into .gpu-carry/site when the packages are not importable.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RESULTS=${OUT:-$ROOT/results/gpu-session}
BUDGET=540
TESTS_S=170
SHAPE=""
CONFIGS=tournament
TESTS=1
EXTRA=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) RESULTS=$2; shift 2 ;;
    --budget_s) BUDGET=$2; shift 2 ;;
    --tests_s) TESTS_S=$2; shift 2 ;;
    --shape) SHAPE=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --no_tests) TESTS=0; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_session.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$RESULTS"
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
say() { echo "[$((SECONDS - START)) s] $*" | tee -a "$RESULTS/session.log"; }

PY=${PYTHON:-python3}
if ! "$PY" -c "import deepspeed, mlflow, submitit, datasets, fire, pydantic" 2>/dev/null; then
  if compgen -G ".gpu-carry/*.whl" >/dev/null; then
    say "installing the carried wheels into .gpu-carry/site"
    "$PY" -m pip install -q --no-index --no-deps --target .gpu-carry/site .gpu-carry/*.whl >"$RESULTS/carry.log" 2>&1 \
      || say "WARNING: the carried wheels did not all install (carry.log)"
  fi
  export PYTHONPATH=$ROOT/.gpu-carry/site${PYTHONPATH:+:$PYTHONPATH}
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "no nvidia-smi"
  "$PY" - <<'EOF' 2>&1
import importlib.metadata as md, platform
print("python", platform.python_version())
for name in ("torch", "transformers", "accelerate", "deepspeed", "peft", "mlflow-skinny", "mlflow", "datasets",
             "triton", "bitsandbytes"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "-")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
} >"$RESULTS/env.txt"
say "env: $(head -n1 "$RESULTS/env.txt")"
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
[[ -n $SHAPE ]] || SHAPE=$([[ $CUDA == 1 ]] && echo xl || echo tiny)

TESTS_RC=skipped
if (( TESTS )); then
  t=$(( TESTS_S < $(left) - 120 ? TESTS_S : $(left) - 120 ))
  if (( t > 20 )); then
    say "tests/gpu (at most $t s)"
    timeout --signal=INT --kill-after=10 "$t" "$PY" -m pytest tests/gpu -q -p no:cacheprovider -o addopts="" \
      --timeout="$t" --junitxml="$RESULTS/gpu-tests.xml" >"$RESULTS/gpu-tests.log" 2>&1
    TESTS_RC=$?
    say "tests/gpu: exit $TESTS_RC; $(tail -n1 "$RESULTS/gpu-tests.log")"
  fi
fi

if [[ $SHAPE == tiny ]]; then  # the CPU smoke run: tiny shapes, short sequences, few steps
  SIZE=(--steps 12 --batch 2 --src_len 64 --tgt_len 16)
else  # about 15 s of warm-up (the first logging interval, compiles included) and 40 timed steps
  SIZE=(--steps 48 --batch 8 --src_len 512 --tgt_len 128)
fi
T_LEFT=$(( $(left) - 10 ))
say "tournament ($CONFIGS, $SHAPE, budget $T_LEFT s)"
"$PY" bench/gpu_throughput.py --shape "$SHAPE" "${SIZE[@]}" --configs "$CONFIGS" --budget_s "$T_LEFT" \
  --side_timeout 240 --out "$RESULTS/tournament.json" --md "$RESULTS/tournament.md" "${EXTRA[@]}" \
  >"$RESULTS/tournament.log" 2>&1
BENCH_RC=$?
say "tournament: exit $BENCH_RC"
[[ -f $RESULTS/tournament.md ]] && cat "$RESULTS/tournament.md"
REST=$("$PY" - "$RESULTS/tournament.json" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
except (OSError, ValueError, KeyError):
    sys.exit()
skipped = [r["config"] for r in rows if r.get("status") == "skipped" and "time budget" in str(r.get("reason"))]
print(",".join(["baseline", *skipped]) if skipped else "")
EOF
)
[[ -z $REST ]] || say "the budget left sides out; the next call (the baseline again, for same-run ratios):" \
  "bash bench/gpu_session.sh --no_tests --out <another folder> --configs $REST"
cat >"$RESULTS/session.json" <<EOF
{"shape": "$SHAPE", "cuda": $CUDA, "budget_s": $BUDGET, "elapsed_s": $((SECONDS - START)),
 "tests_exit": "$TESTS_RC", "tournament_exit": $BENCH_RC, "results": "$RESULTS"}
EOF
say "done in $((SECONDS - START)) s; results in $RESULTS"
[[ $BENCH_RC == 0 ]]
