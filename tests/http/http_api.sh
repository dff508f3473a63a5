#!/usr/bin/env bash
# The OpenAI-compatible HTTP API as users reach it: `freekv up` with an API key, then curl (a plain and
# a streamed completion, a refused key, a chat refused by a model without a chat template), `freekv
# generate` over gRPC with and without the key, and the official `openai` npm client (openai_client.mjs):
# completions on the shipped model, chat on a model with a template.
# Usage: http_api.sh BIN_DIR MODEL_DIR CHAT_MODEL_DIR
set -euo pipefail
bin="$1" model="$2" chat_model="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -d "$here/node_modules/openai" ]; then
  echo "http_api: $here/node_modules/openai is missing: run scripts/install-deps.sh" >&2
  exit 1
fi
dir="$(mktemp -d)"
echo "sk-local-test" >"$dir/keys"
up=""
trap '[ -n "$up" ] && { kill $up 2>/dev/null || true; wait $up 2>/dev/null || true; }; rm -rf "$dir"' EXIT

# Starts `freekv up` on model $1 (stopping the one before); sets base (the /v1 URL) and name (the model id).
start_up() {
  if [ -n "$up" ]; then kill $up; wait $up 2>/dev/null || true; fi
  rm -f "$dir/up.out"
  "$bin/freekv" up --model "$1" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --api-keys-file "$dir/keys" \
    --run-dir "$dir/run" --admin-token-file "$dir/token" --threads 2 >"$dir/up.out" 2>"$dir/up.err" &
  up=$!
  for _ in $(seq 600); do grep -q "HTTP API" "$dir/up.out" 2>/dev/null && break; sleep 0.1; done
  base="$(grep -o 'http://[0-9.]*:[0-9]*/v1' "$dir/up.out" || true)"
  name="$(sed -n "s/.*HTTP API.*model '\([^']*\)'.*/\1/p" "$dir/up.out")"
  if [ -z "$base" ]; then
    echo "http_api: freekv up printed no HTTP address" >&2
    cat "$dir/up.out" "$dir/up.err" >&2
    exit 1
  fi
  echo "http_api: $base, model $name"
}

start_up "$model"
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
no_template="$(curl -sS -w ' %{http_code}' "${auth[@]}" "$base/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}]}')"
echo "curl: $no_template"
grep -q 'no chat template.* 409$' <<<"$no_template" || { echo "http_api: a chat to a model without a template was not refused clearly" >&2; exit 1; }
echo "curl: plain, streamed, refused-key and no-template checks passed"
# The same keys guard the gRPC API.
grpc_addr="$(sed -n 's/^  coordinator  \([0-9.:]*\) .*/\1/p' "$dir/up.out")"
if "$bin/freekv" generate --coordinator "$grpc_addr" --prompt "Hi" --max-tokens 2 >/dev/null 2>"$dir/nokey.err"; then
  echo "http_api: the gRPC API answered without a key" >&2; exit 1
fi
grep -q UNAUTHENTICATED "$dir/nokey.err" || { cat "$dir/nokey.err" >&2; exit 1; }
"$bin/freekv" generate --coordinator "$grpc_addr" --api-key-file "$dir/keys" --prompt "Hi" --max-tokens 2 >/dev/null
echo "freekv generate: refused without a key, served with --api-key-file"
node "$here/openai_client.mjs" "$base" sk-local-test "$name" completions

start_up "$chat_model"
node "$here/openai_client.mjs" "$base" sk-local-test "$name" chat
