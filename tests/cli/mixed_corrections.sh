#!/usr/bin/env bash
# The report that aborted the worker: `freekv run --policy freekv` on a 16-layer model with a prompt of
# about 1,600 tokens and 300 generated tokens, correction thresholds 0, 0.1 and 0.2, the default budget
# (2048 = 512 + 1024 + 512, so the context stays in the regime where a head has fewer candidates than
# selected slots). Some KV heads are corrected and others not in most steps (a correction rate strictly
# between 0 and 1); every run must finish its 300 tokens.
set -euo pipefail
freekv="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$freekv" mkmodel --arch llama --layers 16 --seed 3 --out "$work/model" > /dev/null
/usr/bin/python3 -c 'print(" ".join("word%d" % (i % 97) for i in range(600)))' > "$work/prompt.txt"
for tau in 0 0.1 0.2; do
  "$freekv" run --model "$work/model" --prompt-file "$work/prompt.txt" --max-tokens 300 --ignore-eos --policy freekv \
    --correction-threshold "$tau" --json > "$work/run.json"
  /usr/bin/python3 - "$work/run.json" "$tau" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); r = j["retrieval"]
assert len(j["tokens"]) == 300, len(j["tokens"])
assert 1024 < len(j["prompt_tokens"]) + 300 < 2048, len(j["prompt_tokens"])
assert 0 < r["correction_rate"] < 1, f"corrections {r['correction_triggers']}/{r['correction_checks']} are not mixed"
print(f"tau {sys.argv[2]}: {len(j['prompt_tokens'])} prompt tokens + 300, corrections "
      f"{r['correction_triggers']}/{r['correction_checks']}, {r['pages_recalled']} chunks recalled")
PY
done
echo "mixed corrections: ok"
