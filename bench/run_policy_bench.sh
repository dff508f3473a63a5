#!/usr/bin/env bash
# Retrieval benchmark of issue 4: decode of the Llama-3.2-1B-shaped random bf16 model at 32K context,
# batch 1 and 4, under every policy (budget 2048 = 512 sink + 1024 selected + 512 recent), with the
# offloading policies going through a private freekv-kvstore. Writes
# bench/results/cpu-policies-<host>-<date>.json. Needs the model of bench/make_bench_model.sh (made if
# missing) and about 16 GiB of free memory; takes several minutes on 2 cores. Extra flags go to `freekv bench`
# (e.g. --correction-threshold -1 to measure freekv without correction).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="$("$root/bench/make_bench_model.sh")"
mkdir -p "$root/bench/results"
out="${OUT:-$root/bench/results/cpu-policies-$(hostname)-$(date -u +%Y%m%d).json}"
"$build/bin/freekv" bench --model "$model" --contexts 32768 --batches 1,4 \
  --policies full,streaming,quest,arkvale,freekv --prefill-tokens 32 --decode-steps 8 --out "$out" "$@"
echo "run_policy_bench: wrote $out" >&2
