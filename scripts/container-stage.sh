#!/usr/bin/env bash
# Stages freekv's four binaries and the shared libraries they link (found with ldd, less the C library's
# own, which every base image has) into OUT/bin and OUT/lib: what deploy/container/Dockerfile copies into
# the image, from its build stage or (target prebuilt) from this machine's build.
# Usage: container-stage.sh BIN_DIR OUT
set -euo pipefail
bin="$1" out="$2"
mkdir -p "$out/bin" "$out/lib"
for b in freekv freekv-kvstore freekv-worker freekv-coordinator; do
  [ -x "$bin/$b" ] || { echo "container-stage: $bin/$b is missing: build it first" >&2; exit 1; }
  cp "$bin/$b" "$out/bin/"
done
ldd "$out"/bin/* | awk '/=> \//{print $3}' | sort -u \
  | grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux[^/]*)\.so' \
  | xargs -r -I{} cp -L {} "$out/lib/"
