#!/usr/bin/env bash
# The load benchmark's short version: a rate the worker keeps up with, then one far past its batch and
# queue (max batch 2, queue 2). Checks outcomes, not speed: at the low rate every request is served; past
# the queue limit requests are refused with RESOURCE_EXHAUSTED at once (each refusal answered in under
# a second, where a queued request would wait for seats) while the others are still served, and no
# request fails any other way.
# Usage: load_short.sh LOAD_BENCH_BINARY
set -euo pipefail
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
"$1" --rates 2,60 --seconds 2 --prompt_mix 64,256 --max_tokens 16 --max_batch 2 --max_queue 2 --threads 2 --out "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
low, high = j["rates"]
assert low["sent"] > 0 and low["served"] == low["sent"], low
assert high["refused_resource_exhausted"] > 0, ("nothing refused past the queue limit", high)
assert high["served"] > 0, high
assert low["failed_otherwise"] == 0 and high["failed_otherwise"] == 0, (low, high)
assert high["refusal_p99_s"] < 1.0, ("refusals were not immediate", high)
assert all(v > 0 for v in j["memory_at_start"].values()), j["memory_at_start"]
print("load_short: %d/%d served at %.0f req/s; at %.0f req/s %d served, %d refused (p99 %.3f s)" % (
    low["served"], low["sent"], low["offered_rate"], high["offered_rate"], high["served"],
    high["refused_resource_exhausted"], high["refusal_p99_s"]))
PY
