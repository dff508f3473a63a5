#!/usr/bin/env bash
# CPU decode/prefill benchmark of issue 2: the Llama-3.2-1B-shaped random bf16 model
# (bench/make_bench_model.sh) at contexts 1K/8K/32K and batch 1/4, full attention. Writes
# bench/results/cpu-engine-<host>-<date>.json. Needs a build (scripts/build.sh) and about 10 GiB of
# free memory; takes several minutes on 2 cores. Extra flags go to `freekv bench`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="$("$root/bench/make_bench_model.sh")"
mkdir -p "$root/bench/results"
out="${OUT:-$root/bench/results/cpu-engine-$(hostname)-$(date -u +%Y%m%d).json}"
"$build/bin/freekv" bench --model "$model" --contexts 1024,8192,32768 --batches 1,4 --out "$out" "$@"
echo "run_cpu_bench: wrote $out" >&2
