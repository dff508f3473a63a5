#!/usr/bin/env bash
# The CPU's matrix-product ceiling at the Llama-3.2-1B shapes of bench/make_bench_model.sh (hidden 2048,
# 32 query / 8 KV heads of 64, MLP 8192, vocabulary 128256), one 512-token prefill chunk, every path
# this build has (bench/gemm_bench.cc). Writes bench/results/gemm-<host>-<date>.json. Needs a build
# (scripts/build.sh); about 30 s on 2 cores. Extra flags go to gemm_bench (--chunk, --threads, ...).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
mkdir -p "$root/bench/results"
out="${OUT:-$root/bench/results/gemm-$(hostname)-$(date -u +%Y%m%d).json}"
"$build/bin/gemm_bench" "$@" >"$out"
echo "run_gemm_bench: wrote $out" >&2
