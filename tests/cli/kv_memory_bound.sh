#!/usr/bin/env bash
# Worker memory bounded by the budget (the premise of the product): `freekv run --policy freekv` over a
# prompt of more than 16K tokens with budget 512 (64 sink + 320 selected + 128 recent, pages of 32),
# prefill chunks of 512. The sequence's peak share of the worker's KV memory (--json kv_memory, the
# blocks of --kv-memory it held at once: local pages, selected slots and a streamed group) must stay
# within budget + window + one prefill chunk's pages per layer, plus one group of pages streamed back
# for dense attention — while the whole context would take over thirty times that.
set -euo pipefail
freekv="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$freekv" mkmodel --arch llama --layers 2 --hidden 128 --heads 4 --kv-heads 2 --head-dim 64 --intermediate 256 \
  --vocab 512 --seed 9 --out "$work/model" > /dev/null
/usr/bin/python3 -c '
import random
random.seed(4)
words = ["ledger", "harbor", "quiet", "signal", "orbit", "lantern", "meadow", "copper", "violet", "tundra"]
print(" ".join(random.choice(words) + str(random.randrange(100)) for _ in range(3000)))' > "$work/prompt.txt"
"$freekv" run --model "$work/model" --prompt-file "$work/prompt.txt" --max-tokens 32 --ignore-eos --policy freekv \
  --budget 512 --sink 64 --recent 128 --prefill-chunk 512 --json > "$work/run.json"
/usr/bin/python3 - "$work/run.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
tokens = len(j["prompt_tokens"]) + len(j["tokens"])
assert len(j["prompt_tokens"]) >= 16384, f"prompt of {len(j['prompt_tokens'])} tokens, want at least 16K"
layers, page, budget, recent, chunk, group = 2, 32, 512, 128, 512, 16  # group: TieredKv::kStreamGroupPages
block = j["kv_memory"]["block_bytes"]
bound_blocks = layers * (budget // page + recent // page + chunk // page + 1) + group
whole_blocks = layers * -(-tokens // page)
peak = j["kv_memory"]["peak_bytes"]
print(f"{tokens} tokens: peak worker KV {peak} bytes = {peak // block} blocks; bound {bound_blocks} blocks "
      f"({bound_blocks * block} bytes); the whole context would be {whole_blocks} blocks ({whole_blocks * block} bytes); "
      f"digests {j['kv_memory']['digest_bytes']} bytes")
assert 0 < peak <= bound_blocks * block, "the worker held more than the budget allows"
assert j["retrieval"]["pages_recalled"] > 0
PY
echo "kv memory bound: ok"
