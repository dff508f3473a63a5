#!/usr/bin/env bash
# A `freekv run` that dies, kill -9 included, leaves no private kvstore running and no pool segment in
# /dev/shm: its kvstore gets SIGTERM when its parent dies and removes its own pool as it stops.
set -euo pipefail
freekv="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prompt="$(printf 'a long and winding road %.0s' $(seq 80))"
for how in KILL TERM; do
  "$freekv" run --prompt "$prompt" --max-tokens 30000 --ignore-eos --policy freekv --budget 256 --sink 32 \
    --recent 64 > /dev/null 2> "$work/err" &
  run_pid=$!
  pool="/dev/shm/freekv-private-$run_pid"
  for _ in $(seq 100); do [ -e "$pool" ] && break; sleep 0.1; done
  [ -e "$pool" ] || { cat "$work/err"; echo "FAIL: no private pool appeared"; exit 1; }
  kv_pid="$(pgrep -f -- "--pool_name=freekv-private-$run_pid" | head -1)"
  [ -n "$kv_pid" ] || { echo "FAIL: no private kvstore process"; exit 1; }
  sleep 1  # mid-generation
  kill -"$how" "$run_pid"
  wait "$run_pid" 2>/dev/null || true
  for _ in $(seq 100); do
    if [ ! -e "$pool" ] && ! kill -0 "$kv_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  [ ! -e "$pool" ] || { echo "FAIL: $pool outlived freekv run (SIG$how)"; exit 1; }
  if kill -0 "$kv_pid" 2>/dev/null; then echo "FAIL: the private kvstore outlived freekv run (SIG$how)"; exit 1; fi
  echo "SIG$how: the private kvstore and its pool went with freekv run"
done
echo "private kvstore cleanup: ok"
