#!/usr/bin/env bash
# CLI check: `freekv bench --interleave-batches` runs every batch size of a context in one run, with
# each case named by its own policy and batch (results come batch by batch, policies in order), the
# same cases as the default run one batch size after another, and says so in its method.
set -euo pipefail
freekv="$1"
model="$2"  # the default model's directory
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
common=(--model "$model" --contexts 256 --batches 1,3 --policies full,streaming --budget 128 --sink 32 --recent 64
        --prefill-tokens 16 --decode-steps 2)
"$freekv" bench "${common[@]}" --interleave-batches --out "$dir/interleaved.json" >/dev/null
"$freekv" bench "${common[@]}" --out "$dir/separate.json" >/dev/null
/usr/bin/python3 - "$dir/interleaved.json" "$dir/separate.json" <<'PY'
import json, sys
interleaved, separate = (json.load(open(p)) for p in sys.argv[1:3])
def cases(report):
    return sorted((c["policy"], c["context"], c["batch"], len(c["decode_step_seconds"])) for c in report["cases"])
want = sorted((p, 256, b, 2) for p in ("full", "streaming") for b in (1, 3))
assert cases(interleaved) == want, cases(interleaved)
assert cases(separate) == want, cases(separate)
assert "batch sizes' too" in interleaved["method"], interleaved["method"]
assert "batch sizes' too" not in separate["method"], separate["method"]
# streaming holds at most its budget's pages of the 256-token context; full holds all of it: a case
# carrying the wrong policy's name would show the other's KV.
kv = {(c["policy"], c["batch"]): c["kv_bytes_per_sequence"] for c in interleaved["cases"]}
for b in (1, 3):
    assert kv[("streaming", b)] < kv[("full", b)], kv
print("bench --interleave-batches: ok")
PY
