#!/usr/bin/env bash
# Smoke test of GPU training, for the first machine with an NVIDIA GPU: provisions
# @tensorflow/tfjs-node-gpu (deploy/provision.sh --with-tfjs-node-gpu: the tensorflow wheel and the
# CUDA wheels of its and-cuda extra, about 3.5 GB, into the cache), trains the housing MLP on the GPU
# (bench/train-epochs.ts) and prints the backend, epochs/s against tfjs-node on the CPU, and the GPU
# utilisation nvidia-smi saw during training. Needs the NVIDIA driver and access to npm and PyPI.
# Exits 0 when training ran on the GPU, 1 when it did not, 2 when there is no GPU to test.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
say() { printf '[gpu-smoke] %s\n' "$*"; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  say "no NVIDIA driver here (nvidia-smi is not on PATH): nothing to test; run this on a GPU machine"
  exit 2
fi
if ! gpus=$(nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>&1) || [ -z "$gpus" ]; then
  say "nvidia-smi lists no GPU: ${gpus:-no output}"
  exit 2
fi
say "GPUs: $gpus"

bash deploy/provision.sh --with-tfjs-node --with-tfjs-node-gpu

# GPU utilisation every second while training runs.
samples="$(mktemp)"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 >"$samples" 2>/dev/null &
smi=$!
run() { MLPIPE_TF_BACKEND="$1" node --import tsx bench/train-epochs.ts '{"epochs":11}' | tail -1; }
gpu_json="$(run tfjs-node-gpu)" || { kill "$smi" 2>/dev/null; say "training on tfjs-node-gpu failed (above)"; exit 1; }
kill "$smi" 2>/dev/null || true
cpu_json="$(run tfjs-node)" || cpu_json=""

node -e '
  const [gpuJson, cpuJson, samplesFile] = process.argv.slice(1);
  const rate = (j) => { const ms = JSON.parse(j).msPerEpoch.slice(1).sort((a, b) => a - b); return 1000 / ms[Math.floor(ms.length / 2)]; };
  const g = JSON.parse(gpuJson);
  const util = require("node:fs").readFileSync(samplesFile, "utf8").trim().split("\n").map((l) => l.split(",").map(Number)).filter((r) => r.length === 2 && r.every(Number.isFinite));
  const peak = util.length ? Math.max(...util.map((r) => r[0])) : NaN;
  const mean = util.length ? util.reduce((a, r) => a + r[0], 0) / util.length : NaN;
  const mem = util.length ? Math.max(...util.map((r) => r[1])) : NaN;
  console.log(`[gpu-smoke] backend ${g.backend}: ${rate(gpuJson).toFixed(2)} epochs/s (housing MLP, ${g.rows} rows, batch ${g.batchSize})` + (cpuJson ? `; tfjs-node on the CPU: ${rate(cpuJson).toFixed(2)} epochs/s` : ""));
  console.log(`[gpu-smoke] GPU utilisation while training: mean ${mean.toFixed(0)} %, peak ${peak} %, memory up to ${mem} MiB (${util.length} samples)`);
  process.exit(g.backend === "tfjs-node-gpu" ? 0 : 1);
' "$gpu_json" "$cpu_json" "$samples"
