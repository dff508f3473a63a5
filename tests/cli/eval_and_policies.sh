#!/usr/bin/env bash
# CLI check: `freekv eval` prints its table for every task, policy and budget on the default model
# (full agreeing with itself exactly; the dynamics task's cosines well formed; a prefill shared by the
# policies answering as separate prefills do), and `freekv run --policy
# P --json` reports retrieval statistics, with the offloading policies recalling through a private
# kvstore; `freekv tokenize --lines` encodes each line as the single-text form does.
set -euo pipefail
freekv="$1"
model="$2"  # the default model's directory (its tokenizer for tokenize --lines)
out="$(mktemp)"

json="$(mktemp)"
trap 'rm -f "$out" "$json"' EXIT
"$freekv" eval --tasks passkey,needle,kv,agreement,dynamics --contexts 1024 --depths 0.5 --trials 1 \
  --budgets 256,512 --sink 64 --recent 128 --agreement-tokens 8 --out "$json" | tee "$out"
for task in passkey needle kv agreement; do
  grep -Eq "^$task +full +- +1024 " "$out" || { echo "FAIL: no $task row for full"; exit 1; }
  for policy in streaming quest arkvale freekv; do
    for budget in 256 512; do
      grep -Eq "^$task +$policy +$budget +1024 " "$out" || { echo "FAIL: no $task row for $policy at $budget"; exit 1; }
    done
  done
done
grep -Eq "^agreement +full +- +1024 +- +1\.000 first divergence -1, mean KL 0," "$out" \
  || { echo "FAIL: full does not agree with itself"; exit 1; }
/usr/bin/python3 - "$json" <<'PY'
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["results"] if r["task"] == "dynamics"]
assert len(rows) == 1 and rows[0]["policy"] == "full", rows  # measured once, under the first policy
heads = rows[0]["heads"]
assert len(heads) == 4 * 2 + 1 and heads[-1]["layer"] == "all", heads  # 4 layers x 2 KV heads, then all
for h in heads[:-1]:
    assert h["steps"] == 8 - 2, h  # 8 generated tokens: 7 decode steps, 6 adjacent pairs
    assert -1 <= h["p10_cosine"] <= h["median_cosine"] <= 1, h
    assert 0 <= h["correction_rate_tau_0.8"] <= h["correction_rate_tau_0.9"] <= 1, h
print("dynamics: ok, mean cosine %.3f" % heads[-1]["mean_cosine"])
PY
# Sharing each case's prefill across the policies (the default) answers exactly as when every policy
# prefills the case itself: the same text for every case, policy and budget.
unshared="$(mktemp)"
trap 'rm -f "$out" "$json" "$unshared"' EXIT
"$freekv" eval --tasks passkey,needle,kv --contexts 1024 --depths 0.5 --trials 1 --budgets 256,512 --sink 64 \
  --recent 128 --share-prefill=false --out "$unshared" > /dev/null
/usr/bin/python3 - "$json" "$unshared" <<'PY'
import json, sys
shared, unshared = (json.load(open(p)) for p in sys.argv[1:])
assert shared["shared_prefill"] is True and unshared["shared_prefill"] is False
key = lambda r: (r["task"], r["policy"], r.get("budget"), r["context"], r["depth"])
a = {key(r): r["outputs"] for r in shared["results"] if "outputs" in r}
b = {key(r): r["outputs"] for r in unshared["results"]}
assert len(a) == 3 * 9 and a.keys() == b.keys(), (sorted(a), sorted(b))  # 3 tasks x (full + 4 policies x 2 budgets)
for k in a:
    assert a[k] == b[k] and all(a[k]), (k, a[k], b[k])
print("shared prefill: the same %d answers as prefilling each case per policy" % len(a))
PY
if "$freekv" eval --tasks passkey,lookup --contexts 1024 > "$out" 2>&1; then
  echo "FAIL: an unknown task was accepted"; exit 1
fi
grep -q "unknown task 'lookup'" "$out" || { echo "FAIL: unclear error for an unknown task"; cat "$out"; exit 1; }

# tokenize --lines: one JSON array per JSON string line, equal to encoding each text alone.
printf '"The pass key is 52113."\n"caf\\u00e9 \\"quoted\\"\\nnext line"\n' \
  | "$freekv" tokenize --tokenizer "$model" --lines > "$out"
[ "$(wc -l < "$out")" = 2 ] || { echo "FAIL: tokenize --lines printed $(wc -l < "$out") lines for 2"; exit 1; }
[ "$(sed -n 1p "$out")" = "$(printf 'The pass key is 52113.' | "$freekv" tokenize --tokenizer "$model")" ] \
  || { echo "FAIL: tokenize --lines line 1 differs from tokenize"; exit 1; }
[ "$(sed -n 2p "$out")" = "$(printf 'caf\xc3\xa9 "quoted"\nnext line' | "$freekv" tokenize --tokenizer "$model")" ] \
  || { echo "FAIL: tokenize --lines line 2 (escapes) differs from tokenize"; exit 1; }
if printf 'not json\n' | "$freekv" tokenize --tokenizer "$model" --lines > "$out" 2>&1; then
  echo "FAIL: a line that is not a JSON string was accepted"; exit 1
fi
grep -q "line 1 is not a JSON string" "$out" || { echo "FAIL: unclear --lines error"; cat "$out"; exit 1; }

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
