#!/usr/bin/env bash
# Reproduces freekv's default model, models/freekv-tiny, on this machine's CPU (or a visible GPU):
# installs the Debian packages the training uses, builds freekv (its BPE trainer and tokenizer), trains
# with a fixed seed, writes the model directory with its loss curve, and the goldens of tests/golden/.
#
#   tools/train/train.sh [--out DIR] [train.py options...]
#
# About an hour on the 2-core development machine; progress (tokens/s, losses, time left) on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$here/models/freekv-tiny"
if [ "${1:-}" = "--out" ]; then out="$2"; shift 2; fi

packages=(python3-torch python3-numpy python3-matplotlib bible-kjv python3-doc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
  echo "train: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

freekv="$here/build/bin/freekv"
[ -x "$freekv" ] || "$here/scripts/build.sh"
work="$here/build/train-work"
mkdir -p "$work"
# Debian's packages belong to the system Python, not to whichever python3 is first on PATH.
/usr/bin/python3 "$here/tools/train/train.py" --freekv "$freekv" --out "$out" --work "$work" "$@"
/usr/bin/python3 "$here/tools/train/golden.py" --model "$out" --freekv "$freekv" --out "$here/tests/golden/freekv-tiny.json"
