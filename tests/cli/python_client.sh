#!/usr/bin/env bash
# The Python gRPC client example (tools/clients/generate.py, Debian's python3-grpcio) against the public
# API through `freekv up`: its greedy text equals `freekv generate`'s, a session's second turn
# reuses the first turn's KV (70 tokens: two whole pages), and an empty prompt is refused.
# Usage: python_client.sh BIN_DIR SOURCE_DIR PYTHON_STUBS_DIR
set -euo pipefail
bin="$1" src="$2" stubs="$3"
dir="$(mktemp -d)"
"$bin/freekv" up --listen 127.0.0.1:0 --http-listen "" --run-dir "$dir/run" --admin-token-file "$dir/token" \
  --threads 2 >"$dir/up.out" 2>"$dir/up.err" &
up=$!
trap 'kill $up 2>/dev/null || true; wait $up 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 600); do grep -q "freekv up: ready" "$dir/up.out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's/^  coordinator  \([0-9.:]*\) .*/\1/p' "$dir/up.out")"
[ -n "$addr" ] || { echo "python_client: freekv up did not start" >&2; cat "$dir/up.out" "$dir/up.err" >&2; exit 1; }
prompt="The key is 48213. Remember it. What is the key? The key is"
client=(/usr/bin/python3 "$src/tools/clients/generate.py" --coordinator "$addr" --stubs "$stubs")
got="$("${client[@]}" --prompt "$prompt" --max-tokens 16 2>"$dir/py.err")"
want="$("$bin/freekv" generate --coordinator "$addr" --prompt "$prompt" --max-tokens 16 2>/dev/null)"
echo "python: $got"
[ "$got" = "$want" ] || { echo "python_client: differs from freekv generate: '$want'" >&2; exit 1; }
grep -q "16 generated" "$dir/py.err"
"${client[@]}" --session py-chat --new-session --prompt "$prompt" --max-tokens 48 >/dev/null 2>"$dir/turn1.err"
"${client[@]}" --session py-chat --prompt " And again, the key is" --max-tokens 8 >/dev/null 2>"$dir/turn2.err"
cat "$dir/turn2.err"
reused="$(sed -n 's/.*(\([0-9]*\) reused).*/\1/p' "$dir/turn2.err")"
[ "${reused:-0}" -gt 0 ] || { echo "python_client: the second turn reused no KV" >&2; exit 1; }
"${client[@]}" --prompt "" --max-tokens 4 2>"$dir/bad.err" && { echo "python_client: an empty prompt was accepted" >&2; exit 1; }
grep -q "INVALID_ARGUMENT" "$dir/bad.err"
echo "python_client: passed"
