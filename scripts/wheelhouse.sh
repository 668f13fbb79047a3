#!/usr/bin/env bash
# wheelhouse.sh - download/build every wheel this project needs, to install it where no
# package index can be reached (air-gapped cluster nodes). Run it on a connected machine.
#
# Usage: bash scripts/wheelhouse.sh [--python 3.12] [--platform manylinux_2_28_x86_64]
#                                   [--out wheelhouse/] [--extras gpu,...] [--with-torch]
#
#   --python X.Y        Python of the target nodes            [the running python's version]
#   --platform P        wheel platform tag, or a comma list   [manylinux_2_28_x86_64]
#                       (takes manylinux2014 and older wheels too; glibc >= 2.28 on the
#                       nodes: pyarrow, needed by datasets, has no manylinux2014 wheel)
#   --out DIR           the wheelhouse                        [wheelhouse/ in the project]
#   --extras A,B        extras of setup.cfg [options.extras_require] to include
#   --with-torch        include torch and its CUDA libraries (GBs). By default torch is left
#                       out: the nodes use the cluster's own CUDA build of torch.
#   --torch-version V   torch version the rest is resolved against when torch is left out
#                       [the upper bound of setup.cfg's torch requirement]
#
# Requirements come from setup.cfg (install_requires + extras) and pyproject.toml's
# build-system (so that `pip install -e .` works offline). Wheels come from the index with
# `pip download --only-binary=:all:`; a package that has no wheel for the target (an sdist
# only, e.g. deepspeed, rouge-score) is built here with `pip wheel --no-deps` and must come
# out pure python (py3-none-any). Environment: PYTHON (the python that runs pip) [python3].
set -euo pipefail

die() { echo "wheelhouse.sh: error: $*" >&2; exit 1; }
arg() { [[ -n ${2:-} ]] || die "$1 needs a value (see --help)"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "no '$PY' on PATH (set PYTHON=...)"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_PY=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PLATFORM=manylinux_2_28_x86_64
OUT=$ROOT/wheelhouse
EXTRAS=""
WITH_TORCH=0
TORCH_VERSION=""

while [[ $# -gt 0 ]]; do
  case $1 in
    --python) arg "$@"; TARGET_PY=$2; shift 2 ;;
    --platform) arg "$@"; PLATFORM=$2; shift 2 ;;
    --out) arg "$@"; OUT=$2; shift 2 ;;
    --extras) arg "$@"; EXTRAS=$2; shift 2 ;;
    --with-torch) WITH_TORCH=1; shift ;;
    --torch-version) arg "$@"; TORCH_VERSION=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ $TARGET_PY =~ ^3\.[0-9]+$ ]] || die "--python wants X.Y, e.g. 3.12 (got '$TARGET_PY')"
[[ -f $ROOT/setup.cfg ]] || die "no setup.cfg in $ROOT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

# The requirements (reqs.txt) and, unless --with-torch, a metadata-only "torch" wheel that
# stands in for the cluster's torch during resolution, pinned by constraints.txt.
"$PY" - "$ROOT" "$EXTRAS" "$WITH_TORCH" "$TORCH_VERSION" "$WORK" <<'EOF' || exit 1
import configparser, os, sys, zipfile
from pip._vendor.packaging.requirements import Requirement
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
root, extras, with_torch, torch_version, work = sys.argv[1:]

def fail(msg):
    sys.exit(f"wheelhouse.sh: error: {msg}")

def lines(value):
    return [l.strip() for l in value.splitlines() if l.strip() and not l.strip().startswith("#")]

cfg = configparser.ConfigParser(interpolation=None)
cfg.read(os.path.join(root, "setup.cfg"))
reqs = lines(cfg.get("options", "install_requires", fallback=""))
known = cfg["options.extras_require"] if cfg.has_section("options.extras_require") else {}
for extra in filter(None, (e.strip() for e in extras.split(","))):
    if extra not in known:
        fail(f"no extra '{extra}' in setup.cfg [options.extras_require] (have: {', '.join(known) or 'none'})")
    reqs += lines(known[extra])
pyproject = os.path.join(root, "pyproject.toml")
if os.path.isfile(pyproject):
    with open(pyproject, "rb") as f:
        reqs += tomllib.load(f).get("build-system", {}).get("requires", [])

torch = [r for r in reqs if Requirement(r).name.lower() == "torch"]
if with_torch == "0":
    reqs = [r for r in reqs if r not in torch]
    spec = Requirement(torch[0]).specifier if torch else None
    if not torch_version and spec:
        torch_version = next((s.version for s in spec if s.operator in ("==", "<=")), "")
    if not torch_version:
        fail("cannot tell which torch the nodes have: pass --torch-version X.Y.Z")
    if spec and not spec.contains(torch_version, prereleases=True):
        fail(f"--torch-version {torch_version} is outside setup.cfg's '{torch[0]}'")
    version = f"{torch_version}+wheelhouse.stub"
    dist = f"torch-{version}.dist-info"
    os.makedirs(f"{work}/stub")
    with zipfile.ZipFile(f"{work}/stub/torch-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}/RECORD", "")
    with open(f"{work}/constraints.txt", "w") as f:
        f.write(f"torch=={version}\n")
    print(f"torch left out: resolving against torch {torch_version} (the cluster's build)")
with open(f"{work}/reqs.txt", "w") as f:
    f.write("\n".join(reqs) + "\n")
print(f"{len(reqs)} requirements from setup.cfg{' + extras ' + extras if extras else ''} and pyproject.toml")
EOF

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TARGET=(--python-version "$TARGET_PY" --implementation cp --abi "cp${TARGET_PY/./}" --only-binary=:all:)
IFS=, read -ra PLATFORMS <<<"$PLATFORM"
for p in "${PLATFORMS[@]}"; do
  if [[ $p =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then  # pip adds no older glibc tags to these itself
    for ((v = BASH_REMATCH[1]; v >= 17; v--)); do TARGET+=(--platform "manylinux_2_${v}_${BASH_REMATCH[2]}"); done
    TARGET+=(--platform "manylinux2014_${BASH_REMATCH[2]}")
  else
    TARGET+=(--platform "$p")
  fi
done
LINKS=(--find-links "$OUT")
if [[ -f $WORK/constraints.txt ]]; then
  LINKS+=(--find-links "$WORK/stub" -c "$WORK/constraints.txt")
fi

# Download; when a package has no wheel for the target, build it here and try again.
BUILT=()
while true; do
  if "$PY" -m pip download "${TARGET[@]}" "${LINKS[@]}" -d "$OUT" -r "$WORK/reqs.txt" 2>&1 | tee "$WORK/log"; then
    break
  fi
  missing=$(sed -n 's/^ERROR: No matching distribution found for //p' "$WORK/log" | head -n1)
  [[ -n $missing ]] || die "pip download failed (see its messages above)"
  for b in "${BUILT[@]}"; do [[ $b != "$missing" ]] || die "built '$missing' but pip still finds no usable wheel"; done
  echo "--> no wheel of '$missing' for cp${TARGET_PY/./}/$PLATFORM: building it from source"
  rm -rf "$WORK/build"
  DS_BUILD_OPS=0 "$PY" -m pip wheel --no-deps -w "$WORK/build" "$missing" \
    || die "could not build a wheel of '$missing'"
  for whl in "$WORK"/build/*.whl; do
    [[ $whl == *-none-any.whl ]] || die "'$missing' has no wheel for this target and is not pure python" \
      "($(basename "$whl")): try a newer --platform, or run this with the nodes' python on their platform"
    mv "$whl" "$OUT/"
  done
  BUILT+=("$missing")
done
rm -f "$OUT"/torch-*+wheelhouse.stub-*.whl

# Check: everything resolves from the wheelhouse alone. (pip install, unlike pip download,
# checks Requires-Python against the running python, not --python-version: skip that check.)
"$PY" -m pip install --dry-run --ignore-installed --ignore-requires-python --no-index "${TARGET[@]}" "${LINKS[@]}" \
  --target "$WORK/check" -r "$WORK/reqs.txt" >"$WORK/check.log" 2>&1 \
  || { cat "$WORK/check.log" >&2; die "the wheelhouse does not resolve offline (see above)"; }

WHEELS=("$OUT"/*.whl)
echo
echo "Wheelhouse $OUT: ${#WHEELS[@]} wheels, $(du -ch "${WHEELS[@]}" | tail -n1 | cut -f1), $((SECONDS - START)) s" \
  "(python $TARGET_PY, $PLATFORM$([[ $WITH_TORCH == 1 ]] || echo ', without torch'))."
[[ ${#BUILT[@]} -eq 0 ]] || echo "Built from source: ${BUILT[*]}"
echo "Resolves offline: yes, $(sed -n 's/^Would install //p' "$WORK/check.log" | tr ' ' '\n' | grep -vc '^torch-')" \
  "packages$([[ $WITH_TORCH == 1 ]] || echo " + the cluster's torch")."
cat <<EOF

Copy it to the nodes (e.g. rsync -a $OUT/ NODE:wheelhouse/; then use that path below) and,
with the cluster's torch already importable (module load / its env), in the project directory:

  # into the active environment (venv/conda):
  pip install --no-index --find-links $OUT -e .

  # or where site-packages is not writable (PATH: the ninja that DeepSpeed's JIT ops need):
  pip install --no-index --no-deps --target $OUT/site $OUT/*.whl
  export PYTHONPATH=$OUT/site\${PYTHONPATH:+:\$PYTHONPATH} PATH=$OUT/site/bin:\$PATH
EOF
