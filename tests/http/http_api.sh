#!/usr/bin/env bash
# The OpenAI-compatible HTTP API as users reach it: `freekv up` with an API key, then curl (a plain and
# a streamed completion, a refused key) and the official `openai` npm client (openai_client.mjs).
# Usage: http_api.sh BIN_DIR MODEL_DIR
set -euo pipefail
bin="$1" model="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -d "$here/node_modules/openai" ]; then
  echo "http_api: $here/node_modules/openai is missing: run scripts/install-deps.sh" >&2
  exit 1
fi
dir="$(mktemp -d)"
echo "sk-local-test" >"$dir/keys"
"$bin/freekv" up --model "$model" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --api-keys-file "$dir/keys" \
  --run-dir "$dir/run" --admin-token-file "$dir/token" --threads 2 >"$dir/up.out" 2>"$dir/up.err" &
up=$!
trap 'kill $up 2>/dev/null || true; wait $up 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 600); do grep -q "HTTP API" "$dir/up.out" 2>/dev/null && break; sleep 0.1; done
base="$(grep -o 'http://[0-9.]*:[0-9]*/v1' "$dir/up.out" || true)"
name="$(sed -n "s/.*HTTP API.*model '\([^']*\)'.*/\1/p" "$dir/up.out")"
if [ -z "$base" ]; then
  echo "http_api: freekv up printed no HTTP address" >&2
  cat "$dir/up.out" "$dir/up.err" >&2
  exit 1
fi
echo "http_api: $base, model $name"
auth=(-H "Authorization: Bearer sk-local-test" -H "Content-Type: application/json")
body="{\"model\":\"$name\",\"prompt\":\"The key is 48213. Remember it. What is the key? The key is\",\"max_tokens\":8,\"temperature\":0}"
plain="$(curl -sS --fail-with-body "${auth[@]}" "$base/completions" -d "$body")"
echo "curl: $plain"
grep -q '"object":"text_completion"' <<<"$plain"
grep -q '"completion_tokens":8' <<<"$plain"
streamed="$(curl -sS -N --fail-with-body "${auth[@]}" "$base/completions" -d "${body%\}},\"stream\":true}")"
grep -q '^data: {' <<<"$streamed"
[ "$(grep -c '^data: ' <<<"$streamed")" -ge 3 ]
[ "$(grep '^data: ' <<<"$streamed" | tail -1)" = "data: [DONE]" ]
code="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "$base/models")"
[ "$code" = 401 ] || { echo "http_api: a wrong key got $code, not 401" >&2; exit 1; }
echo "curl: plain, streamed and refused-key checks passed"
node "$here/openai_client.mjs" "$base" sk-local-test "$name"
