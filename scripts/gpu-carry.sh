#!/usr/bin/env bash
# gpu-carry.sh - the wheels a GPU box without a package index lacks for the node path, small
# enough to travel with the checkout (a transfer limit of 64 MiB: this stays under 60 MiB).
#
# Usage: bash scripts/gpu-carry.sh [--out .gpu-carry] [--python 3.12] [--qlora]
#
#   --out DIR      where the wheels go (git-ignored)                        [.gpu-carry]
#   --python X.Y   the GPU box's python                                     [3.12]
#   --qlora        only bitsandbytes, into DIR-qlora: it does not fit beside the rest, so a
#                  QLoRA check travels alone, in a second call
#
# It runs scripts/wheelhouse.sh (every requirement of setup.cfg at the project's pins, torch
# left out: the box keeps its CUDA build), then keeps only the wheels of packages the box's
# image does not have (IMAGE_HAS below: a PyTorch image with transformers, accelerate, peft,
# pyarrow, pandas, ...), and the server-less `mlflow-skinny` instead of `mlflow` (its UI alone
# is about 30 MB; the node logs to a sqlite file or a server, which skinny + sqlalchemy do).
# Then it prints the total with the checkout, and fails above the limit.
#
# On the box (no index there), from the project directory:
#   pip install --no-index --no-deps --target .gpu-carry/site .gpu-carry/*.whl
#   export PYTHONPATH=$PWD/.gpu-carry/site${PYTHONPATH:+:$PYTHONPATH}
# (bench/gpu_session.sh does both itself).
set -euo pipefail

die() { echo "gpu-carry.sh: error: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/.gpu-carry
PYV=3.12
QLORA=0
LIMIT_MIB=60
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --python) PYV=${2:?--python needs X.Y}; shift 2 ;;
    --qlora) QLORA=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
PLATFORM=(--python-version "$PYV" --implementation cp --abi "cp${PYV/./}" --only-binary=:all:)
for ((v = 28; v >= 17; v--)); do PLATFORM+=(--platform "manylinux_2_${v}_x86_64"); done
PLATFORM+=(--platform manylinux2014_x86_64)

# What the GPU image already holds (normalised names); a wheel of one of these is not carried.
IMAGE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer click cloudpickle cmake colorama contourpy coverage cycler cython einops filelock
flatbuffers fonttools frozenlist fsspec grpcio h11 h5py hf-xet httpcore httpx huggingface-hub idna imageio
iniconfig jinja2 joblib kiwisolver lazy-loader lxml markdown markdown-it-py markupsafe matplotlib mdurl meson
ml-dtypes mpmath msgpack multidict narwhals networkx ninja numpy nvidia-ml-py onnx opencv-python-headless
packaging pandas pathspec peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow
pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pytest pytest-timeout python-dateutil pyyaml regex
requests rich sacrebleu safetensors scikit-learn scipy sentencepiece setuptools shellingham six sortedcontainers
sympy tabulate tensorboard threadpoolctl tokenizers torch tqdm transformers triton typer typing-extensions
urllib3 werkzeug wheel wrapt xxhash yarl zipp"
normal() { tr 'A-Z_.' 'a-z--' <<<"$1"; }

size_mib() { du -cb "$@" 2>/dev/null | tail -n1 | awk '{printf "%.1f", $1 / 1048576}'; }
checkout_mib() { (cd "$ROOT" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n1 | awk '{printf "%.1f", $1 / 1048576}'); }

if (( QLORA )); then
  OUT=$OUT-qlora
  rm -rf "$OUT" && mkdir -p "$OUT"
  python3 -m pip download -q --no-deps "${PLATFORM[@]}" -d "$OUT" "bitsandbytes>=0.45"
else
  CACHE=$ROOT/.gpu-carry-cache  # the whole wheelhouse, kept for the next run (git-ignored)
  bash "$ROOT/scripts/wheelhouse.sh" --python "$PYV" --out "$CACHE" >/dev/null \
    || die "scripts/wheelhouse.sh failed (run it alone to see why)"
  MLFLOW=$(python3 - "$ROOT/setup.cfg" <<'EOF'
import configparser, re, sys
cfg = configparser.ConfigParser(interpolation=None)
cfg.read(sys.argv[1])
pin = next(l.strip() for l in cfg["options"]["install_requires"].splitlines() if re.match(r"\s*mlflow\b", l))
print(pin.replace("mlflow", "mlflow-skinny", 1))
EOF
)
  python3 -m pip download -q --no-deps "${PLATFORM[@]}" -d "$CACHE" "$MLFLOW"
  rm -rf "$OUT" && mkdir -p "$OUT"
  for whl in "$CACHE"/*.whl; do
    name=$(normal "$(basename "$whl" | cut -d- -f1)")
    [[ $name == mlflow ]] && continue  # skinny instead
    [[ " $(tr '\n' ' ' <<<"$IMAGE_HAS") " == *" $name "* ]] && continue
    cp "$whl" "$OUT/"
  done
fi

WHEELS=("$OUT"/*.whl)
carry=$(size_mib "${WHEELS[@]}")
checkout=$(checkout_mib)
total=$(awk -v a="$carry" -v b="$checkout" 'BEGIN {printf "%.1f", a + b}')
echo "carry: ${#WHEELS[@]} wheels, $carry MiB in $OUT; the checkout $checkout MiB; together $total MiB" \
  "(limit $LIMIT_MIB MiB)"
ls "$OUT" | sed 's/-[0-9].*//' | tr '\n' ' ' && echo
awk -v t="$total" -v l="$LIMIT_MIB" 'BEGIN {exit !(t <= l)}' || die "$total MiB is over the $LIMIT_MIB MiB limit"
