#!/usr/bin/env bash
# The test command: installs dependencies, builds everything (CUDA sources too where nvcc exists),
# runs every test with ctest, then runs the fuzz targets again in a sanitizer build. CUDA tests report
# "skipped" (exit 77) where no GPU is visible.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/build.sh"
(cd "$build" && ctest --output-on-failure -j "$(nproc)" --timeout 900)

# The fuzz targets once more under AddressSanitizer and UndefinedBehaviorSanitizer (tests/fuzz: the
# parsers of untrusted files, the public requests, a damaged pool), in a second build tree holding only
# them and what they link.
sanitize="$build-sanitize"
cmake -S "$root" -B "$sanitize" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFREEKV_SANITIZE=ON -DFREEKV_CUDA=OFF \
  -DFREEKV_FUZZ_MODEL_DIR="$build/models/random" >/dev/null
mapfile -t fuzz_targets < <(ninja -C "$sanitize" -t targets all | grep -o '^fuzz_[a-z_]*_replay' | sort -u)
cmake --build "$sanitize" -j "$(nproc)" --target "${fuzz_targets[@]}"
(cd "$sanitize" && ctest --output-on-failure -j "$(nproc)" -R '^fuzz_')
