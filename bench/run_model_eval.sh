#!/usr/bin/env bash
# Accuracy of the shipped model (models/freekv-tiny, or $MODEL) under every retrieval policy, with
# `freekv eval`. Each part writes its own JSON (machine, commit, raw results, every answer) under
# bench/results/:
#
#   grid       passkey and needle under full, and under streaming, quest, arkvale and freekv at budgets
#              256, 512 and 1024 (sink 64 + recent 128, pages of 32), at 1K, 2K, 4K and 8K, depths 0.1,
#              0.5 and 0.9, TRIALS cases per depth (default 20)
#   long       the same at 16K and 32K (LONG_CONTEXTS, LONG_TRIALS cases per depth, default 20: about 25
#              and 65 minutes here), one JSON per context (model-eval-long-<tag>-<context>.json); "32K" is
#              32,000 tokens, so that prompt and answer fit the model's 32,768 positions
#   agreement  every policy and budget against full over 256 generated tokens at 4096 (first divergence,
#              top-1 match, mean KL, freekv's correction rate), and the model's own query dynamics
#              (adjacent-step query cosine per layer and KV head) at 2048 and 8192
#
#   bench/run_model_eval.sh [grid] [long] [agreement]      (all three when none is named)
#
# Each case is prefilled once and every policy continues it (`freekv eval --share-prefill`, the default:
# prefill is dense under every policy). bench/eval_table.py turns the JSON into the model card's tables.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
freekv="${BUILD_DIR:-$root/build}/bin/freekv"
model="${MODEL:-$root/models/freekv-tiny}"
tag="$(hostname)-$(date -u +%Y%m%d)"
mkdir -p "$root/bench/results"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(grid long agreement)
window=(--sink 64 --recent 128 --page-tokens 32)
columns=(--policies full,streaming,quest,arkvale,freekv --budgets 256,512,1024 "${window[@]}")
# merge OUT IN...: one JSON whose results are all of the inputs' (which are then removed).
merge() {
  local out="$1"; shift
  /usr/bin/python3 - "$out" "$@" <<'PY'
import json, sys
parts = [json.load(open(p)) for p in sys.argv[2:]]
merged = dict(parts[0])
merged["results"] = [r for p in parts for r in p["results"]]
with open(sys.argv[1], "w") as f:
    json.dump(merged, f, indent=2)
PY
  rm -f "$@"
}
for part in "${parts[@]}"; do
  out="$root/bench/results/model-eval-$part-$tag.json"
  case "$part" in
    grid)
      "$freekv" eval --model "$model" --tasks passkey,needle "${columns[@]}" --contexts 1024,2048,4096,8192 \
        --trials "${TRIALS:-20}" --out "$out" ;;
    long)
      # One JSON per context, so a long run keeps what it finished.
      for ctx in ${LONG_CONTEXTS:-16384 32000}; do
        "$freekv" eval --model "$model" --tasks passkey,needle "${columns[@]}" --contexts "$ctx" \
          --trials "${LONG_TRIALS:-20}" --out "${out%.json}-$ctx.json"
        echo "run_model_eval: wrote ${out%.json}-$ctx.json" >&2
      done
      continue ;;
    agreement)
      "$freekv" eval --model "$model" --tasks agreement "${columns[@]}" \
        --contexts 4096 --agreement-tokens 256 --out "$out.agreement"
      "$freekv" eval --model "$model" --tasks dynamics --policies full --contexts 2048,8192 \
        --agreement-tokens 256 --out "$out.dynamics"
      merge "$out" "$out.agreement" "$out.dynamics" ;;
    *) echo "run_model_eval: unknown part '$part' (grid, long, agreement)" >&2; exit 2 ;;
  esac
  echo "run_model_eval: wrote $out" >&2
done
