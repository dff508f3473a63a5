#!/usr/bin/env bash
# TLS on the public API: the coordinator's flags are checked (a certificate without its key, a key others
# may read, a key of another certificate, a file that is no certificate), then `freekv up` serves TLS
# with a self-signed certificate for localhost/127.0.0.1 made here by openssl: the worker registers over
# TLS, `freekv generate`, `freekv admin`, the Python client and curl (HTTPS) are served when they verify
# the certificate, and refused in plaintext or when they trust another certificate.
# Usage: tls.sh BIN_DIR SOURCE_DIR PYTHON_STUBS_DIR
set -euo pipefail
bin="$1" src="$2" stubs="$3"
dir="$(mktemp -d)"
up=""
trap '[ -n "$up" ] && { kill $up 2>/dev/null || true; wait $up 2>/dev/null || true; }; rm -rf "$dir"' EXIT
fail() { echo "tls: FAIL: $*" >&2; exit 1; }

# make_cert NAME: NAME.pem (self-signed, localhost and 127.0.0.1) and NAME.key (0600).
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$dir/$1.key" -out "$dir/$1.pem" 2>/dev/null
  chmod 600 "$dir/$1.key"
}
make_cert server
make_cert other

# check_refused WHAT EXPECTED FLAGS...: --check-config exits 1 naming the problem.
check_refused() {
  local what="$1" want="$2"; shift 2
  if "$bin/freekv-coordinator" --check_config "$@" >"$dir/check.out" 2>&1; then fail "$what was accepted"; fi
  grep -q -- "$want" "$dir/check.out" || { cat "$dir/check.out" >&2; fail "$what: no '$want' in the error"; }
}
check_refused "a certificate without its key" "needs --tls-key-file" --tls_cert_file="$dir/server.pem"
check_refused "a key of another certificate" "is not the key of the certificate" \
  --tls_cert_file="$dir/server.pem" --tls_key_file="$dir/other.key"
check_refused "a key that is no certificate" "holds no PEM certificate" \
  --tls_cert_file="$dir/server.key" --tls_key_file="$dir/server.key"
cp "$dir/server.key" "$dir/open.key" && chmod 644 "$dir/open.key"
check_refused "a key others may read" "may be read or changed by other users" \
  --tls_cert_file="$dir/server.pem" --tls_key_file="$dir/open.key"
"$bin/freekv-coordinator" --check_config --tls_cert_file="$dir/server.pem" --tls_key_file="$dir/server.key" \
  | grep -q "over TLS" || fail "--check-config of a good pair does not say TLS"

"$bin/freekv" up --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --tls-cert-file "$dir/server.pem" \
  --tls-key-file "$dir/server.key" --run-dir "$dir/run" --admin-token-file "$dir/token" --threads 2 \
  >"$dir/up.out" 2>"$dir/up.err" &
up=$!
for _ in $(seq 600); do grep -q "freekv up: ready" "$dir/up.out" 2>/dev/null && break; sleep 0.1; done
grep -q "freekv up: ready" "$dir/up.out" || { cat "$dir/up.out" "$dir/up.err" >&2; fail "freekv up did not start"; }
addr="$(sed -n 's/^  coordinator  \([0-9.:]*\) .*/\1/p' "$dir/up.out")"
base="$(grep -o 'https://[0-9.]*:[0-9]*/v1' "$dir/up.out" || true)"
[ -n "$addr" ] && [ -n "$base" ] || { cat "$dir/up.out" >&2; fail "no coordinator or https address printed"; }
echo "tls: coordinator $addr, HTTP API $base"

prompt="The key is 48213. Remember it. What is the key? The key is"
got="$("$bin/freekv" generate --coordinator "$addr" --tls-ca-file "$dir/server.pem" --prompt "$prompt" --max-tokens 8)"
echo "tls: freekv generate: $got"
[ -n "$got" ] || fail "freekv generate over TLS printed nothing"
"$bin/freekv" admin workers --coordinator "$addr" --tls-ca-file "$dir/server.pem" --token-file "$dir/token" \
  | grep -q "ready" || fail "freekv admin over TLS lists no ready worker (the worker registers over TLS)"
py="$(/usr/bin/python3 "$src/tools/clients/generate.py" --coordinator "$addr" --stubs "$stubs" \
  --tls-ca-file "$dir/server.pem" --prompt "$prompt" --max-tokens 8 2>/dev/null)"
[ "$py" = "$got" ] || fail "the Python client over TLS printed '$py', freekv generate '$got'"

if "$bin/freekv" generate --coordinator "$addr" --prompt "$prompt" --max-tokens 8 >/dev/null 2>"$dir/plain.err"; then
  fail "a plaintext client was served"
fi
if "$bin/freekv" generate --coordinator "$addr" --tls-ca-file "$dir/other.pem" --prompt "$prompt" --max-tokens 8 \
  >/dev/null 2>"$dir/other.err"; then
  fail "a client trusting another certificate was served"
fi
if "$bin/freekv" generate --coordinator "$addr" --tls-ca-file "$dir/server.key" --prompt x >/dev/null 2>"$dir/ca.err"; then
  fail "a CA file without a certificate was accepted"
fi
grep -q "holds no PEM certificate" "$dir/ca.err" || { cat "$dir/ca.err" >&2; fail "unclear error for a bad --tls-ca-file"; }

body="{\"model\":\"freekv-tiny\",\"prompt\":\"$prompt\",\"max_tokens\":8,\"temperature\":0}"
https="$(curl -sS --fail-with-body --cacert "$dir/server.pem" -H "Content-Type: application/json" "$base/completions" -d "$body")"
/usr/bin/python3 -c 'import json,sys; t=json.loads(sys.argv[1])["choices"][0]["text"]; assert t == sys.argv[2], (t, sys.argv[2])' \
  "$https" "$got" || fail "HTTPS completion differs from gRPC's: $https"
if curl -sS --max-time 5 "${base/https/http}/models" >/dev/null 2>&1; then fail "plain HTTP was served"; fi
if curl -sS --max-time 5 --cacert "$dir/other.pem" "$base/models" >/dev/null 2>&1; then
  fail "curl trusting another certificate was served"
fi
echo "tls: passed"
