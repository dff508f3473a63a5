#!/usr/bin/env bash
# Prefill as a user sees it (issue 18): `freekv run` on real prompts of about 1K, 8K and 32K tokens from
# token 0, in the machine's arithmetic and in fp32 (up to 8K), beside the matrix-product ceiling of the
# same run, on the Llama-3.2-1B-shaped bench model (bench/make_bench_model.sh). Writes
# bench/results/cpu-prefill-<host>-<date>.json. Needs a build (scripts/build.sh) and about 12 GiB of free
# memory; about 10 minutes on 2 cores. Extra flags go to bench/prefill_bench.py (--tokens, --arithmetic).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="$("$root/bench/make_bench_model.sh")"
mkdir -p "$root/bench/results"
out="${OUT:-$root/bench/results/cpu-prefill-$(hostname)-$(date -u +%Y%m%d).json}"
/usr/bin/python3 "$root/bench/prefill_bench.py" --root "$root" --build "$build" --model "$model" --out "$out" "$@"
echo "run_prefill_bench: wrote $out" >&2
