#!/usr/bin/env bash
# Load benchmark (bench/load_bench.cc): open-loop Poisson arrivals through the coordinator at 1, 2, 4,
# 8, 16 and 32 requests/s, 20 s each, prompts of 64, 256 or 1024 tokens, 32 generated tokens each,
# one worker (max batch 8, queue 16) on the shipped model. Writes
# bench/results/load-<host>-<date>.json (time to first token and inter-token latency p50/p99, goodput,
# refusals and how fast they came, each process's memory after each rate). About 3 minutes on 2 cores.
# Extra flags go to load_bench (e.g. --model DIR --rates 1,2,4).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
mkdir -p "$root/bench/results"
out="$root/bench/results/load-$(hostname)-$(date -u +%Y%m%d).json"
"$build/bin/load_bench" --out "$out" "$@"
echo "run_load: wrote $out" >&2
