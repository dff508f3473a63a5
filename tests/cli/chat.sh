#!/usr/bin/env bash
# --chat on `freekv run` and `freekv generate` as a user types it: the conversation (--system,
# --messages, --prompt) rendered by the model's chat template gives exactly the tokens of the rendered
# text sent raw; `generate --chat` through `freekv up` answers as `run --chat` does (greedy); a model
# without a template and --system without --chat are refused with what to do.
# Usage: chat.sh FREEKV TEST_MODEL_DIR (with the template tests/chat/test_model_chat_template.jinja) BASE_MODEL_DIR (without)
set -euo pipefail
freekv="$1" model="$2" base_model="$3"
dir="$(mktemp -d)"
up=""
trap '[ -n "$up" ] && { kill $up 2>/dev/null || true; wait $up 2>/dev/null || true; }; rm -rf "$dir"' EXIT
fail() { echo "chat: $*" >&2; exit 1; }
tokens() { /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["prompt_tokens"], j["tokens"])'; }

chat="$("$freekv" run --model "$model" --chat --system "Be brief." --prompt "Hello there" --max-tokens 8 --json | tokens)"
raw="$("$freekv" run --model "$model" --raw-prompt --prompt $'<|begin_of_text|><system>Be brief.\n<user>Hello there\n<assistant>' \
        --max-tokens 8 --json | tokens)"
[ "$chat" = "$raw" ] || fail "run --chat differs from its rendered text sent raw:"$'\n'"  chat: $chat"$'\n'"  raw:  $raw"

printf '%s' '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! 🙂"}]' >"$dir/history.json"
chat="$("$freekv" run --model "$model" --chat --messages "$dir/history.json" --prompt "How are you?" --max-tokens 8 --json | tokens)"
raw="$("$freekv" run --model "$model" --raw-prompt --max-tokens 8 --json \
        --prompt $'<|begin_of_text|><user>Hi\n<assistant>Hello! 🙂<|end_of_text|>\n<user>How are you?\n<assistant>' | tokens)"
[ "$chat" = "$raw" ] || fail "run --chat --messages differs from its rendered text sent raw"

if "$freekv" run --model "$base_model" --chat --prompt "Hello" --max-tokens 4 2>"$dir/err"; then fail "a model without a template accepted --chat"; fi
grep -q "no chat template" "$dir/err" || fail "unclear error for a model without a template: $(cat "$dir/err")"
if "$freekv" run --model "$model" --system "x" --prompt "Hello" --max-tokens 4 2>"$dir/err"; then fail "--system without --chat accepted"; fi
grep -q "need --chat" "$dir/err" || fail "unclear error for --system without --chat: $(cat "$dir/err")"

"$freekv" up --model "$model" --listen 127.0.0.1:0 --http-listen "" --run-dir "$dir/run" --admin-token-file "$dir/token" \
  --threads 2 >"$dir/up.out" 2>"$dir/up.err" &
up=$!
for _ in $(seq 600); do grep -q "freekv up: ready" "$dir/up.out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's/^  coordinator  \([0-9.:]*\) .*/\1/p' "$dir/up.out")"
[ -n "$addr" ] || { cat "$dir/up.out" "$dir/up.err" >&2; fail "freekv up did not start"; }
got="$("$freekv" generate --coordinator "$addr" --chat --system "Be brief." --prompt "Hello there" --max-tokens 8 2>/dev/null)"
want="$("$freekv" run --model "$model" --chat --system "Be brief." --prompt "Hello there" --max-tokens 8 2>/dev/null)"
[ "$got" = "$want" ] || fail "generate --chat '$got' differs from run --chat '$want'"
echo "chat: passed"
