#!/usr/bin/env bash
# Serving benchmark of issue 5 (bench/serve_bench.cc): 8 concurrent clients through the services on
# loopback vs the same work with continuous batching in one process, on two models — the tiny default
# model (where per-token RPC overhead is largest relative to compute) and a mid-size random Llama
# (8 layers, hidden 1024, 16 query / 4 KV heads of 64, MLP 4096, 8192-token vocabulary: 0.12 B
# parameters). Writes bench/results/serve-<model>-<host>-<date>.json. Needs a build (scripts/build.sh);
# takes a few minutes on 2 cores. Extra flags go to serve_bench.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
mid="${SERVE_BENCH_MODEL_DIR:-$build/models/serve-bench-mid}"
if [ ! -f "$mid/config.json" ]; then
  "$build/bin/freekv" mkmodel --arch llama --out "$mid" --layers 8 --hidden 1024 --heads 16 --kv-heads 4 \
    --head-dim 64 --intermediate 4096 --vocab 8192 --seed 1 >&2
fi
mkdir -p "$root/bench/results"
stamp="$(hostname)-$(date -u +%Y%m%d)"
for name in default mid; do
  model="$root/models/freekv-tiny"
  [ "$name" = mid ] && model="$mid"
  out="$root/bench/results/serve-$name-$stamp.json"
  "$build/bin/serve_bench" --model "$model" --clients 8 --requests 2 --prompt-tokens 128 --max-tokens 64 \
    --repeats 3 --out "$out" "$@"
  echo "run_serve_bench: wrote $out" >&2
done
