#!/usr/bin/env bash
# The newcomer's one command: installs dependencies and builds (scripts/build.sh; skip with
# DEMO_SKIP_BUILD=1), starts the services with `freekv up` in the background (kvstore, coordinator and
# a worker on loopback, free ports), waits until they are ready, streams a generation in a new session,
# adds a second turn that reuses the first turn's KV, shows the session's KV occupancy with
# `freekv admin session`, and stops everything (also on Ctrl-C or an error).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
if [ "${DEMO_SKIP_BUILD:-0}" != 1 ]; then
  "$root/scripts/build.sh"
fi
bin="$build/bin"
work="$(mktemp -d /tmp/freekv-demo.XXXXXX)"
token="$work/admin-token"
# A budget of 128 tokens (32 sink + 32 selected + 64 recent) so that this short conversation already
# attends a selected subset of its pages and recalls them from the kvstore (the default is 2048).
"$bin/freekv" up --listen 127.0.0.1:0 --admin-token-file "$token" --run-dir "$work/up" \
  --budget 128 --sink 32 --recent 64 > "$work/up.out" 2>&1 &
up_pid=$!
cleanup() {
  if kill -0 "$up_pid" 2>/dev/null; then
    kill -TERM "$up_pid"
    wait "$up_pid" || true
    tail -n 2 "$work/up.out"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  grep -q "freekv up: ready" "$work/up.out" && break
  if ! kill -0 "$up_pid" 2>/dev/null; then
    cat "$work/up.out" >&2
    echo "demo: freekv up failed to start (above)" >&2
    exit 1
  fi
  sleep 0.1
done
grep -q "freekv up: ready" "$work/up.out" || { cat "$work/up.out" >&2; echo "demo: freekv up is not ready after 60 s" >&2; exit 1; }
cat "$work/up.out"
addr="$(awk '$1 == "coordinator" { print $2; exit }' "$work/up.out")"

echo
# The first turn hides a fact in the session and lets the model write on (sampled); the second turn
# reuses the session's KV and asks for the fact (greedy): the answer comes from the first turn's context.
turn1=" Remember that the secret code of the garden is 48213. And the king went up to the city, and all the people with him."
echo "\$ freekv generate --coordinator $addr --new-session --session demo --prompt \"$turn1\" --max-tokens 120 --temperature 0.8 --top-p 0.95 --seed 1"
"$bin/freekv" generate --coordinator "$addr" --new-session --session demo --prompt "$turn1" --max-tokens 120 \
  --temperature 0.8 --top-p 0.95 --seed 1
echo
turn2=" What is the secret code of the garden? The secret code of the garden is"
echo "\$ freekv generate --coordinator $addr --session demo --prompt \"$turn2\" --max-tokens 6"
"$bin/freekv" generate --coordinator "$addr" --session demo --prompt "$turn2" --max-tokens 6
echo
echo "\$ freekv admin session demo --coordinator $addr --token-file $token"
"$bin/freekv" admin session demo --coordinator "$addr" --token-file "$token"
echo
echo "demo: stopping freekv up"
