#!/usr/bin/env bash
# Installs what freekv needs (scripts/install-deps.sh), configures and builds it into build/ (or $BUILD_DIR).
# Extra arguments go to cmake's configure step, e.g. -DFREEKV_CUDA=OFF.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build" -j "$(nproc)"
