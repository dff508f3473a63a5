#!/usr/bin/env bash
# Any model, any batch: Llama-3-8B's attention geometry (32 layers, 32 query and 8 KV heads of 128) at
# hidden size 256, under every policy, through `freekv run` (one process, private kvstore) and through
# `freekv up --max-batch 8` with eight concurrent `freekv generate` streams. Every layer of every
# sequence keeps a recall in flight under freekv (256 at once here), which must share the worker's few
# staging pairs; the context (about 800 tokens) crosses the budget (256 = 32 + 160 + 64).
set -euo pipefail
freekv="$1"
work="$(mktemp -d)"
up_pid=""
cleanup() {
  if [ -n "$up_pid" ]; then kill -INT "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$freekv" mkmodel --arch llama --layers 32 --hidden 256 --heads 32 --kv-heads 8 --head-dim 128 --intermediate 512 \
  --vocab 512 --seed 5 --out "$work/model" > /dev/null
prompt="$(printf 'a river of tokens flows past the window %.0s' $(seq 45))"
budget=(--budget 256 --sink 32 --recent 64)

for policy in full streaming quest arkvale freekv; do
  "$freekv" run --model "$work/model" --prompt "$prompt" --max-tokens 16 --ignore-eos --policy "$policy" "${budget[@]}" \
    --json > "$work/run.json"
  /usr/bin/python3 - "$work/run.json" "$policy" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); policy = sys.argv[2]; r = j["retrieval"]
assert len(j["tokens"]) == 16, j["tokens"]
assert len(j["prompt_tokens"]) > 256, f"prompt of {len(j['prompt_tokens'])} tokens does not cross the budget"
assert len(r["per_layer"]) == 32
if policy != "full":
    assert r["selection_steps"] > 0, f"{policy}: the budget was never used"
if policy in ("arkvale", "freekv"):
    assert r["pages_recalled"] > 0, f"{policy}: nothing recalled"
if policy == "freekv":
    assert r["async_recalls"] > 0, "freekv: no background recall"
print(f"run {policy}: ok, {len(j['prompt_tokens'])} prompt tokens, {r['pages_recalled']} chunks recalled, "
      f"{r['async_recalls']} background recalls, peak worker KV {j['kv_memory']['peak_bytes']} bytes")
PY
done

port="$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
for policy in full streaming quest arkvale freekv; do
  "$freekv" up --model "$work/model" --listen "127.0.0.1:$port" --max-batch 8 --policy "$policy" "${budget[@]}" \
    --pool-size 1GiB --run-dir "$work/up" --admin-token-file "$work/token" > "$work/up.log" 2>&1 &
  up_pid=$!
  for _ in $(seq 300); do
    grep -q "freekv up: ready" "$work/up.log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log"; echo "FAIL: freekv up ($policy) exited"; exit 1; }
    sleep 0.2
  done
  grep -q "freekv up: ready" "$work/up.log" || { cat "$work/up.log"; echo "FAIL: freekv up ($policy) not ready"; exit 1; }
  # The pool's blocks fit this model's page (128 KiB of KV + 12 KiB of key statistics), nothing more.
  grep -q "in blocks of 140KiB" "$work/up.log" || { cat "$work/up.log"; echo "FAIL: block size not from the model"; exit 1; }
  pids=()
  for i in $(seq 8); do
    "$freekv" generate --coordinator "127.0.0.1:$port" --prompt "$prompt $i" --max-tokens 24 --ignore-eos --json \
      > "$work/gen$i.json" 2> "$work/gen$i.err" &
    pids+=($!)
  done
  for i in $(seq 8); do
    wait "${pids[$((i - 1))]}" || { cat "$work/gen$i.err"; echo "FAIL: generate $i under $policy"; exit 1; }
  done
  /usr/bin/python3 - "$work" "$policy" <<'PY'
import json, sys
work, policy = sys.argv[1], sys.argv[2]
for i in range(1, 9):
    lines = [json.loads(l) for l in open(f"{work}/gen{i}.json") if l.strip()]
    usage = lines[-1]["usage"]
    got = sum(len(l.get("token_ids", [])) for l in lines)
    assert int(usage["generated_tokens"]) == 24 and got == 24, (i, usage, got)
print(f"up {policy}: 8 concurrent streams of 24 tokens each, ok")
PY
  kill -INT "$up_pid"
  wait "$up_pid" || { cat "$work/up.log"; echo "FAIL: freekv up ($policy) did not stop cleanly"; exit 1; }
  up_pid=""
done
echo "deep model: ok"
