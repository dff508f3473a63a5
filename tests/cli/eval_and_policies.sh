#!/usr/bin/env bash
# CLI check of issue 4: `freekv eval` prints its table for every policy on the default model (full
# agreeing with itself exactly), and `freekv run --policy P --json` reports retrieval statistics, with
# the offloading policies recalling through a private kvstore.
set -euo pipefail
freekv="$1"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

"$freekv" eval --tasks passkey,agreement --contexts 1024 --depths 0.5 --trials 1 --budget 512 --sink 64 \
  --recent 128 --agreement-tokens 8 | tee "$out"
for policy in full streaming quest arkvale freekv; do
  grep -Eq "^passkey +$policy +1024 " "$out" || { echo "FAIL: no passkey row for $policy"; exit 1; }
  grep -Eq "^agreement +$policy +1024 " "$out" || { echo "FAIL: no agreement row for $policy"; exit 1; }
done
grep -Eq "^agreement +full +1024 +- +1\.000 first divergence -1, mean KL 0," "$out" \
  || { echo "FAIL: full does not agree with itself"; exit 1; }

prompt="$(printf 'the quick brown fox jumps over the lazy dog %.0s' $(seq 60))"
for policy in streaming quest arkvale freekv; do
  "$freekv" run --prompt "$prompt" --max-tokens 12 --policy "$policy" --budget 256 --sink 32 --recent 64 --json \
    --ignore-eos > "$out"
  /usr/bin/python3 - "$out" "$policy" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); policy = sys.argv[2]; r = j["retrieval"]
assert r["policy"] == policy, r
assert len(j["tokens"]) == 12, j["tokens"]
assert r["selection_steps"] > 0, f"{policy}: the budget was never used"
if policy in ("arkvale", "freekv"):
    assert r["pages_recalled"] > 0, f"{policy}: nothing recalled"
if policy == "freekv":
    assert r["correction_checks"] > 0
print(f"{policy}: ok, {r['pages_recalled']} pages recalled, corrections {r['correction_triggers']}/{r['correction_checks']}")
PY
done
echo "eval and policies: ok"
