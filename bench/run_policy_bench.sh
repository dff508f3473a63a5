#!/usr/bin/env bash
# Retrieval benchmark: decode of the Llama-3.2-1B-shaped random bf16 model at 32K context, batch 1 and
# 4, budget 2048 = 512 sink + 1024 selected + 512 recent, τ = 0.9, the offloading policies through a
# private freekv-kvstore. Three runs, each its own JSON in bench/results/:
#   cpu-policies-cos0.9-<host>-<date>.json  harness queries, adjacent-step cosine 0.9 (the paper's regime)
#   cpu-policies-cos0.5-<host>-<date>.json  harness queries, cosine 0.5
#   cpu-policies-model-<host>-<date>.json   the random model's own queries and random keys (every
#                                            correction fires), for comparison
#   cpu-policies-full-<host>-<date>.json    full attention alone, the model's queries (what the budget saves)
# Within a run the policies' decode steps alternate (see tools/cmd_bench.cc).
# MODEL=DIR runs the same comparison on another model (for example the shipped models/freekv-tiny, whose
# small shape makes the 32K step attention-bound); its files are named cpu-policies-<model dir name>-....
# The KV of the context is synthesized in every run, so the "model" run's correction rate is of the
# model's queries over random keys; a trained model's real rate comes from `freekv eval --tasks dynamics`.
# The harness (tools/query_dynamics.h) synthesizes keys with hot pages and replaces each decode step's
# queries, so freekv takes its speculative path as it would under a trained model. Needs the model of
# bench/make_bench_model.sh (made if missing) and about 16 GiB of free memory (quest keeps 4 GiB of KV
# resident at batch 4, the kvstore holds 9 GiB for arkvale's and freekv's sequences); takes 15-25 minutes
# on 2 cores. Extra flags go to every `freekv bench` run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="${MODEL:-$("$root/bench/make_bench_model.sh")}"
name="cpu-policies-${MODEL:+$(basename "$MODEL")-}"
mkdir -p "$root/bench/results"
tag="$(hostname)-$(date -u +%Y%m%d)"
common=(--model "$model" --contexts 32768 --batches 1,4 --prefill-tokens 32 --decode-steps 12 --kvstore-pool 10GiB)
for cos in 0.9 0.5; do
  out="$root/bench/results/${name}cos$cos-$tag.json"
  "$build/bin/freekv" bench "${common[@]}" --policies quest,arkvale,freekv --query-cosine "$cos" --out "$out" "$@" > /dev/null
  echo "run_policy_bench: wrote $out" >&2
done
for run in model:quest,arkvale,freekv full:full; do
  out="$root/bench/results/${name}${run%%:*}-$tag.json"
  "$build/bin/freekv" bench "${common[@]}" --policies "${run#*:}" --out "$out" "$@" > /dev/null
  echo "run_policy_bench: wrote $out" >&2
done
