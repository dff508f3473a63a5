#!/usr/bin/env bash
# A long chaos run (tests/chaos/chaos_run.cc): clients keep sessions going across two workers sharing
# one kvstore while a worker is killed (-9), drained (SIGTERM), frozen past its heartbeats (SIGSTOP) or
# the kvstore is killed (-9) and restarted, at random times; every invariant is checked after each
# fault and at the end. Writes bench/results/chaos-<host>-<date>.json and exits 1 on any violation.
# Usage: scripts/chaos.sh --minutes N [more chaos_run flags, e.g. --clients 4 --model DIR --seed 2]
# Needs a build (scripts/build.sh); BUILD_DIR picks another one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
minutes=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="${2:-}"; shift 2 ;;
    --minutes=*) minutes="${1#--minutes=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$minutes" in
  ''|*[!0-9]*) echo "chaos.sh: give the run's length as --minutes N (a whole number, e.g. --minutes 30)" >&2; exit 2 ;;
esac
[ -x "$build/bin/chaos_run" ] || { echo "chaos.sh: no $build/bin/chaos_run; build first (scripts/build.sh)" >&2; exit 2; }
mkdir -p "$root/bench/results"
out="$root/bench/results/chaos-$(hostname)-$(date -u +%Y%m%d).json"
"$build/bin/chaos_run" --seconds "$((minutes * 60))" --fault_gap_min 5 --fault_gap_max 20 --out "$out" "${args[@]}"
echo "chaos.sh: wrote $out" >&2
