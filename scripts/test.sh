#!/usr/bin/env bash
# The test command: installs dependencies, builds everything (CUDA sources too where nvcc exists) and
# runs every test with ctest. CUDA tests report "skipped" (exit 77) where no GPU is visible.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 900
