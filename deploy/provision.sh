#!/usr/bin/env bash
# Installs what mlpipe needs, idempotently: npm dependencies and the Temporal CLI; with
# --with-mlflow also a Python virtualenv holding MLflow (tests run a real `mlflow server`), and with
# --with-gcs-emulator fake-gcs-server (tests of the GCS artifact store), and with --with-evidently
# a virtualenv holding Evidently (to regenerate the drift fixtures; the tests read committed ones), and
# with --with-chromium Debian's chromium (the HTML drift report is checked in a headless browser), and
# with --with-onnx a virtualenv holding the official ONNX checker (exported models are checked by it),
# and with --with-tfjs-node the native TensorFlow backend (@tensorflow/tfjs-node built against the
# TensorFlow C library of the tensorflow-cpu wheel on PyPI; without it training runs on wasm), and
# with --with-tfjs-node-gpu @tensorflow/tfjs-node-gpu from the tensorflow wheel and the CUDA
# libraries of its and-cuda extra (about 3.5 GB of wheels, for GPU machines: deploy/gpu-smoke.sh), and
# with --with-boosting the XGBoost and LightGBM shared libraries from their PyPI wheels (train.xgboost,
# train.lightgbm), and with --with-boosting-bench a virtualenv holding the Python packages of the same
# versions and scikit-learn (npm run bench:boosting and bench:models compare against them; the
# boosted-tree test fixtures are made with them), and with --with-peers a virtualenv holding Prefect
# and Dagster (`npm run bench:cli` runs the same 50-step chain on them), and with --with-forecast-bench
# a virtualenv holding statsmodels (`npm run bench:forecast` compares against its ETS models).
# Slow builds go to a cache outside the checkout (MLPIPE_CACHE_DIR, default ~/.cache/mlpipe) so
# every clone on this machine reuses them. Safe to run again: each step skips what is there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
cache="${MLPIPE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlpipe}"
temporal_version="1.5.1"
mlflow_version="3.17.2"
fake_gcs_version="v1.56.1"
evidently_pins="evidently==0.4.40 pandas==2.1.4 numpy==1.26.4 scipy==1.17.1 pyarrow==17.0.0"
peers_pins="prefect==3.9.1 dagster==1.13.29"
onnx_version="1.23.2"
tf_cpu_version="2.12.0"
tf_gpu_version="2.21.0"
tfjs_node_version="4.22.0"
# Also in adapters/boosting/library.ts (a unit test keeps the two equal).
xgboost_version="3.2.0"
lightgbm_version="4.7.0"
sklearn_version="1.7.2"
statsmodels_version="0.15.0"
with_mlflow=0
with_gcs=0
with_evidently=0
with_peers=0
with_chromium=0
with_onnx=0
with_tfjs_node=0
with_tfjs_node_gpu=0
with_boosting=0
with_boosting_bench=0
with_forecast_bench=0
for arg in "$@"; do
  case "$arg" in
    --with-mlflow) with_mlflow=1 ;;
    --with-gcs-emulator) with_gcs=1 ;;
    --with-evidently) with_evidently=1 ;;
    --with-peers) with_peers=1 ;;
    --with-chromium) with_chromium=1 ;;
    --with-onnx) with_onnx=1 ;;
    --with-tfjs-node) with_tfjs_node=1 ;;
    --with-tfjs-node-gpu) with_tfjs_node_gpu=1 ;;
    --with-boosting) with_boosting=1 ;;
    --with-boosting-bench) with_boosting=1; with_boosting_bench=1 ;;
    --with-forecast-bench) with_forecast_bench=1 ;;
    *) printf '[provision] unknown option %s (known: --with-mlflow, --with-gcs-emulator, --with-evidently, --with-peers, --with-chromium, --with-onnx, --with-tfjs-node, --with-tfjs-node-gpu, --with-boosting, --with-boosting-bench, --with-forecast-bench)\n' "$arg" >&2; exit 2 ;;
  esac
done
say() { printf '[provision] %s\n' "$*" >&2; }

# A Python virtualenv in the cache holding pinned packages, made once (a stamp file marks it done).
cached_venv() {
  local label="$1" venv="$2" stamp="$3"
  shift 3
  if [ -f "$stamp" ]; then
    say "$label: $venv (cached)"
    return
  fi
  say "installing $label into $venv (one time)"
  local start
  start=$(date +%s)
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  touch "$stamp"
  say "$label installed in $(( $(date +%s) - start ))s"
}

# 0. The TensorFlow C library for @tensorflow/tfjs-node, once into the cache (deploy/tfjs-node.sh).
# shellcheck source=deploy/tfjs-node.sh
. deploy/tfjs-node.sh
tfjs_node_fallback=""
if [ "$with_tfjs_node" = 1 ]; then
  tfjs_node_prepare "$cache" "$tf_cpu_version" tensorflow-cpu || tfjs_node_fallback="$tfjs_node_why"
fi

# 1. npm dependencies (re-installed when package.json or the lock file changed).
stamp="node_modules/.mlpipe-installed"
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
  if [ "$with_tfjs_node" = 1 ] && [ -z "$tfjs_node_fallback" ]; then
    # tfjs-node's install script fetches the library from TFJS_NODE_BASE_URI: a local server hands it
    # symlinks into the cache, and node-gyp builds the binding with the system's Node headers.
    tfjs_node_serve "$cache" "$tf_cpu_version" tensorflow-cpu || tfjs_node_fallback="$tfjs_node_why"
  fi
  say "installing npm dependencies"
  # npm install (not npm ci): it honours package-lock.json, and npm 11 rejects its own lock in ci
  # mode when optional platform packages (@swc/core-*) were skipped.
  npm install --no-audit --no-fund --loglevel=error
  tfjs_node_stop
  touch "$stamp"
else
  say "npm dependencies: up to date"
fi

# 1b. tfjs-node, when asked for: installed (outside package.json) and its binding (re)built when it
# is missing or does not load (a plain npm install above removes it again).
if [ "$with_tfjs_node" = 1 ] && [ -z "$tfjs_node_fallback" ] && ! tfjs_node_loads; then
  if tfjs_node_serve "$cache" "$tf_cpu_version" tensorflow-cpu; then
    start=$(date +%s)
    if [ -d node_modules/@tensorflow/tfjs-node ]; then
      say "building the @tensorflow/tfjs-node binding"
      npm rebuild @tensorflow/tfjs-node --loglevel=error >&2 || true
    else
      # Not in package.json: the published package leaves it to the user (an optional peer), and a
      # plain npm install would try tfjs-node's own download. --no-save keeps package.json and the lock.
      say "installing @tensorflow/tfjs-node $tfjs_node_version"
      npm install --no-save --no-audit --no-fund --loglevel=error "@tensorflow/tfjs-node@$tfjs_node_version" $(tfjs_node_keep -gpu) >&2 || true
    fi
    tfjs_node_stop
    if tfjs_node_loads; then say "tfjs-node binding built in $(( $(date +%s) - start ))s"; else tfjs_node_fallback="the @tensorflow/tfjs-node binding did not build or does not load: $tfjs_node_why"; fi
  else
    tfjs_node_fallback="$tfjs_node_why"
  fi
fi
if [ "$with_tfjs_node" = 1 ]; then
  if [ -n "$tfjs_node_fallback" ]; then
    say "tfjs-node: not available, training falls back to the wasm backend: $tfjs_node_fallback"
  else
    say "tfjs-node: @tensorflow/tfjs-node on TensorFlow $tf_cpu_version ($cache/tensorflow-cpu-$tf_cpu_version)"
  fi
fi
# 1c. tfjs-node-gpu (not a dependency: added without saving, so a later full npm install drops it and
# this step adds it again from the cache).
if [ "$with_tfjs_node_gpu" = 1 ]; then
  gpu_fallback=""
  tfjs_node_prepare "$cache" "$tf_gpu_version" tensorflow || gpu_fallback="$tfjs_node_why"
  if [ -z "$gpu_fallback" ] && ! tfjs_node_loads -gpu; then
    if tfjs_node_serve "$cache" "$tf_gpu_version" tensorflow -gpu; then
      say "installing @tensorflow/tfjs-node-gpu $tfjs_node_version"
      start=$(date +%s)
      npm install --no-save --no-audit --no-fund --loglevel=error "@tensorflow/tfjs-node-gpu@$tfjs_node_version" $(tfjs_node_keep) >&2 || true
      tfjs_node_stop
      if tfjs_node_loads -gpu; then say "tfjs-node-gpu binding built in $(( $(date +%s) - start ))s"; else gpu_fallback="the @tensorflow/tfjs-node-gpu binding did not build or does not load: $tfjs_node_why"; fi
    else
      gpu_fallback="$tfjs_node_why"
    fi
  fi
  if [ -n "$gpu_fallback" ]; then
    say "tfjs-node-gpu: not available, training uses the next backend: $gpu_fallback"
  elif ! ls /proc/driver/nvidia/gpus/* >/dev/null 2>&1; then
    # The binding loads without a GPU (TensorFlow would run on the CPU): lib/tf.ts skips it then.
    say "tfjs-node-gpu: built on TensorFlow $tf_gpu_version, but no NVIDIA GPU is visible here (/proc/driver/nvidia/gpus is empty): training uses the next backend (tfjs-node, else wasm)"
  else
    say "tfjs-node-gpu: @tensorflow/tfjs-node-gpu on TensorFlow $tf_gpu_version ($cache/tensorflow-$tf_gpu_version)"
  fi
fi

# 2. Temporal CLI: $TEMPORAL_CLI, else on PATH, else built once into the cache.
if [ -n "${TEMPORAL_CLI:-}" ]; then
  if [ ! -x "$TEMPORAL_CLI" ]; then say "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable file"; exit 1; fi
  say "Temporal CLI: $TEMPORAL_CLI"
elif command -v temporal >/dev/null 2>&1; then
  say "Temporal CLI: $(command -v temporal)"
elif [ -x "$cache/tools/bin/temporal" ]; then
  say "Temporal CLI: $cache/tools/bin/temporal (cached)"
elif command -v go >/dev/null 2>&1; then
  say "building the Temporal CLI v$temporal_version with go install (one time, a few minutes)"
  start=$(date +%s)
  mkdir -p "$cache/tools/bin"
  CGO_ENABLED=0 GOBIN="$cache/tools/bin" GOFLAGS="${GOFLAGS:-} -trimpath" \
    go install -ldflags "-s -w" "github.com/temporalio/cli/cmd/temporal@v$temporal_version"
  say "Temporal CLI built in $(( $(date +%s) - start ))s: $cache/tools/bin/temporal"
else
  cat >&2 <<MSG
[provision] The Temporal CLI is missing and Go is not installed, so it cannot be built.
  Do one of:
    - install Go >= 1.25 (https://go.dev/doc/install) and run 'npm run setup' again;
    - install the Temporal CLI (https://docs.temporal.io/cli#install) and put 'temporal' on PATH;
    - point TEMPORAL_CLI at an existing binary: export TEMPORAL_CLI=/path/to/temporal
MSG
  exit 1
fi

# 3. MLflow in a virtualenv in the cache (tests, and the MLflow UI of `mlpipe dev`).
if [ "$with_mlflow" = 1 ]; then
  venv="$cache/mlflow-venv"
  if [ -x "$venv/bin/mlflow" ] && [ -f "$venv/.mlpipe-mlflow-$mlflow_version" ]; then
    say "MLflow $mlflow_version: $venv (cached)"
  else
    py="${PYTHON:-$(command -v python3 || true)}"
    if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
      say "MLflow needs Python >= 3.10 with venv and pip (set PYTHON=/path/to/python3.10+)"; exit 1
    fi
    say "installing MLflow $mlflow_version into $venv (one time, a few minutes)"
    start=$(date +%s)
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow==$mlflow_version"
    touch "$venv/.mlpipe-mlflow-$mlflow_version"
    say "MLflow installed in $(( $(date +%s) - start ))s"
  fi
fi

# 4. fake-gcs-server, the GCS emulator the tests run (built once into the cache).
if [ "$with_gcs" = 1 ]; then
  if [ -n "${FAKE_GCS_SERVER:-}" ] && [ -x "$FAKE_GCS_SERVER" ]; then
    say "fake-gcs-server: $FAKE_GCS_SERVER"
  elif [ -x "$cache/tools/bin/fake-gcs-server" ]; then
    say "fake-gcs-server: $cache/tools/bin/fake-gcs-server (cached)"
  elif command -v go >/dev/null 2>&1; then
    say "building fake-gcs-server with go install (one time, a few minutes)"
    start=$(date +%s)
    mkdir -p "$cache/tools/bin"
    CGO_ENABLED=0 GOBIN="$cache/tools/bin" GOFLAGS="${GOFLAGS:-} -trimpath" \
      go install -ldflags "-s -w" "github.com/fsouza/fake-gcs-server@$fake_gcs_version"
    say "fake-gcs-server built in $(( $(date +%s) - start ))s"
  else
    say "fake-gcs-server is missing and Go is not installed: install Go >= 1.25, or set FAKE_GCS_SERVER=/path/to/fake-gcs-server"; exit 1
  fi
fi

# 5. Evidently, to regenerate test/fixtures/drift (pinned: the legacy Report API and its numerics),
# with pyarrow for pandas.read_parquet in bench/drift.ts.
if [ "$with_evidently" = 1 ]; then
  # shellcheck disable=SC2086 # the pins are separate words
  cached_venv Evidently "$cache/evidently-venv" "$cache/evidently-venv/.mlpipe-evidently-0.4.40-pyarrow-17" $evidently_pins
fi

# 5b. Prefect and Dagster, the peers of the whole-process bench (bench/cli.ts).
if [ "$with_peers" = 1 ]; then
  # shellcheck disable=SC2086 # the pins are separate words
  cached_venv "Prefect and Dagster" "$cache/peers-venv" "$cache/peers-venv/.mlpipe-peers-prefect-3.9.1-dagster-1.13.29" $peers_pins
fi

# 6. Chromium for the browser test of the HTML report: $CHROMIUM, else /usr/bin/chromium, else apt.
if [ "$with_chromium" = 1 ]; then
  if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then
    say "Chromium: $CHROMIUM"
  elif [ -x /usr/bin/chromium ]; then
    say "Chromium: /usr/bin/chromium"
  else
    sudo=""
    if [ "$(id -u)" != 0 ]; then
      if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else say "Chromium is missing and installing it needs root: apt-get install chromium, or set CHROMIUM=/path/to/chromium"; exit 1; fi
    fi
    say "installing Debian's chromium (one time)"
    start=$(date +%s)
    $sudo apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends chromium >/dev/null; }
    say "Chromium installed in $(( $(date +%s) - start ))s"
  fi
fi

# 7. The official ONNX checker (Python onnx) in a virtualenv in the cache: tests check exported models.
if [ "$with_onnx" = 1 ]; then
  cached_venv "the ONNX checker (onnx $onnx_version)" "$cache/onnx-venv" "$cache/onnx-venv/.mlpipe-onnx-$onnx_version" "onnx==$onnx_version"
fi

# 8. The XGBoost and LightGBM shared libraries, unpacked from their PyPI wheels (no Python needed to
# use them): xgboost/lib/libxgboost.so beside xgboost_cpu.libs/ (its bundled libgomp, found through a
# relative run path), lightgbm/lib/lib_lightgbm.so (links the system's libgomp.so.1).
if [ "$with_boosting" = 1 ]; then
  dir="$cache/boosting-xgboost-$xgboost_version-lightgbm-$lightgbm_version"
  if [ -f "$dir/.mlpipe-boosting" ]; then
    say "XGBoost $xgboost_version, LightGBM $lightgbm_version: $dir (cached)"
  else
    py="${PYTHON:-$(command -v python3 || true)}"
    if [ -z "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
      say "the boosting libraries come from PyPI wheels fetched with pip: install Python 3 with pip (or set PYTHON), or set MLPIPE_XGBOOST_LIB and MLPIPE_LIGHTGBM_LIB"; exit 1
    fi
    say "fetching the xgboost-cpu $xgboost_version and lightgbm $lightgbm_version wheels (one time)"
    start=$(date +%s)
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial/wheels"
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.11 --dest "$dir.partial/wheels" \
      "xgboost-cpu==$xgboost_version" "lightgbm==$lightgbm_version" >&2 ||
      "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$dir.partial/wheels" "xgboost-cpu==$xgboost_version" "lightgbm==$lightgbm_version" >&2
    for whl in "$dir.partial"/wheels/*.whl; do
      "$py" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
keep = [n for n in z.namelist() if n.endswith(".so") or ".so." in n or n == "lightgbm/VERSION.txt"]
z.extractall(sys.argv[2], keep)' "$whl" "$dir.partial"
    done
    rm -rf "$dir.partial/wheels"
    if [ ! -f "$dir.partial/xgboost/lib/libxgboost.so" ] || [ ! -f "$dir.partial/lightgbm/lib/lib_lightgbm.so" ]; then
      say "the wheels did not hold xgboost/lib/libxgboost.so and lightgbm/lib/lib_lightgbm.so (see $dir.partial)"; exit 1
    fi
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
    touch "$dir/.mlpipe-boosting"
    say "boosting libraries unpacked in $(( $(date +%s) - start ))s: $dir"
  fi
fi

# 9. Python xgboost and lightgbm of the same versions and scikit-learn, for npm run bench:boosting and
# bench:models (and test/tools/boosting_fixtures.py).
if [ "$with_boosting_bench" = 1 ]; then
  cached_venv "xgboost $xgboost_version, lightgbm $lightgbm_version and scikit-learn $sklearn_version (Python)" "$cache/boosting-bench-venv" \
    "$cache/boosting-bench-venv/.mlpipe-boosting-bench-$xgboost_version-$lightgbm_version-sklearn-$sklearn_version" \
    "xgboost-cpu==$xgboost_version" "lightgbm==$lightgbm_version" "scikit-learn==$sklearn_version" numpy pandas pyarrow psutil
fi

# 10. Python statsmodels, for npm run bench:forecast (its ETS models beside mlpipe's forecasters on
# the same walk-forward folds).
if [ "$with_forecast_bench" = 1 ]; then
  cached_venv "statsmodels $statsmodels_version (Python)" "$cache/forecast-bench-venv" \
    "$cache/forecast-bench-venv/.mlpipe-forecast-bench-$statsmodels_version" \
    "statsmodels==$statsmodels_version" numpy pandas scipy
fi
