#!/usr/bin/env bash
# The container image built for real and the Kubernetes manifests run as pods, with Debian's podman:
#   1. the base: Debian bookworm made with debootstrap and imported once (cached; no registry is needed);
#   2. the image freekv:latest from deploy/container/Dockerfile: by default its `prebuilt` target, which
#      packs this machine's build (build/bin and the libraries it links); with --full the default target,
#      which builds everything from source inside the build stage;
#   3. the image checked: the binaries run as user 10001, --help and --check-config work inside, no
#      compiler and no secret in it, its size;
#   4. deploy/k8s rendered into pods (deploy/container/render_pods.py: podman 4.3 has no DaemonSet) and run
#      with `podman kube play`: a streamed generation in a session through the coordinator's published
#      port, `freekv admin session` showing its KV in the node pod's kvstore, /metrics of all three, the
#      worker container killed and restarted with the session's next turn reusing its KV, the HTTP API;
#   5. teardown: no pod, container, volume or pool segment left.
# Prints what it does and ends with "container: passed"; exits non-zero at the first failed check.
# Usage: scripts/container.sh [--full] [--keep]     (--keep: leave the pods running, for a look around)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
full=0 keep=0
for a in "$@"; do
  case "$a" in
    --full) full=1 ;;
    --keep) keep=1 ;;
    *) echo "usage: scripts/container.sh [--full] [--keep]" >&2; exit 2 ;;
  esac
done
say() { echo "container: $*"; }
fail() { echo "container: FAILED: $*" >&2; exit 1; }

# ---- what it needs (Debian's packages)
sudo_cmd=()
[ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
missing=()
for p in podman debootstrap runc curl python3-yaml; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" >/dev/null
fi
export CONTAINERS_CONF="$here/deploy/container/containers.conf"
say "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$here" diff --quiet 2>/dev/null || echo ' (modified)'), $(podman --version), runc $(runc --version | sed -n 's/^runc version //p'), $(uname -srm), $(nproc) CPUs"
podman() { "${sudo_cmd[@]}" env CONTAINERS_CONF="$CONTAINERS_CONF" podman "$@"; }

# ---- 1. the base image
base=localhost/freekv-base:bookworm
cache="${XDG_CACHE_HOME:-$HOME/.cache}/freekv/debian-bookworm-minbase.tar"
if ! podman image exists "$base"; then
  if [ ! -f "$cache" ]; then
    root="$(mktemp -d)"
    say "debootstrap bookworm (minbase) into $root"
    "${sudo_cmd[@]}" debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
    mkdir -p "$(dirname "$cache")"
    "${sudo_cmd[@]}" tar -C "$root" -cf "$cache" .
    "${sudo_cmd[@]}" rm -rf "$root"
  fi
  say "importing $cache as $base"
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$cache" "$base" >/dev/null
fi

# ---- 2. the image
t0=$SECONDS
if [ $full = 1 ]; then
  say "building freekv:latest from source (target image)"
  log="$(mktemp)"
  podman build -f "$here/deploy/container/Dockerfile" --build-arg BASE="$base" --build-arg RUNTIME_BASE="$base" \
    -t freekv:latest "$here" >"$log" 2>&1 || { tail -40 "$log" >&2; fail "the source build of the image failed (log: $log)"; }
  rm -f "$log"
else
  stage="$(mktemp -d)"
  "$here/scripts/container-stage.sh" "$here/build/bin" "$stage"
  say "building freekv:latest from this machine's build (target prebuilt)"
  podman build -q -f "$here/deploy/container/Dockerfile" --target prebuilt --build-arg RUNTIME_BASE="$base" \
    -t freekv:latest "$stage" >/dev/null
  rm -rf "$stage"
fi
size="$(podman image inspect freekv:latest --format '{{.Size}}')"
say "image freekv:latest built in $((SECONDS - t0)) s, $((size / 1048576)) MiB"

# ---- 3. the image checked
run() { podman run --rm "$@"; }
[ "$(run --entrypoint /usr/bin/id freekv:latest -u)" = 10001 ] || fail "the image does not run as user 10001"
for b in freekv-coordinator freekv-worker freekv-kvstore freekv; do
  # The services' --help exits 1 (Abseil's flags library does so): what is checked is that it explains.
  help="$(run --entrypoint "/usr/local/bin/$b" freekv:latest --help 2>&1 || true)"
  grep -q -- '--' <<<"$help" && grep -q "$b" <<<"$help" || fail "$b --help printed no usage inside the image"
done
work="$(mktemp -d)"
mkdir -p "$work/secret" "$work/models"
cp -r "$here/models/freekv-tiny" "$work/models/default"
chmod -R a+rX "$work"
# The token as the kubelet mounts a Secret for a pod with fsGroup 10001: root:10001, mode 0440.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret/token"
"${sudo_cmd[@]}" chown 0:10001 "$work/secret/token"
"${sudo_cmd[@]}" chmod 0440 "$work/secret/token"
run -v "$work/secret:/etc/freekv/secret:ro" freekv:latest --check-config --listen=0.0.0.0:50051 \
  --admin-token-file=/etc/freekv/secret/token >/dev/null || fail "freekv-coordinator --check-config failed inside the image"
run -v "$work/models:/models:ro" --entrypoint /usr/local/bin/freekv-worker freekv:latest --check-config \
  --model=/models/default --kv-memory=1GiB >/dev/null || fail "freekv-worker --check-config failed inside the image"
run --entrypoint /usr/local/bin/freekv-kvstore freekv:latest --check-config --listen=unix:/tmp/kv.sock \
  --pool-name=check --pool-size=32MiB >/dev/null || fail "freekv-kvstore --check-config failed inside the image"
compilers="$(run --entrypoint /bin/sh freekv:latest -c 'for c in cc gcc g++ c++ clang ld as nvcc; do command -v $c; done; true')"
[ -z "$compilers" ] || fail "the image holds a compiler: $compilers"
secrets="$(run --entrypoint /bin/sh freekv:latest -c \
  'find / -xdev \( -iname "*token*" -o -name "*.key" -o -name "*.pem" -o -name "id_rsa*" -o -name "*.p12" \) -type f 2>/dev/null; true')"
[ -z "$secrets" ] || fail "the image holds files that look like secrets: $secrets"
if podman image inspect freekv:latest --format '{{range .Config.Env}}{{println .}}{{end}}' | grep -i -E 'token|secret|password|key='; then
  fail "the image's environment holds a secret"
fi
say "image checks passed: user 10001, --help and --check-config of all four binaries, no compiler, no secret"

# ---- 4. the manifests as pods
net=freekv-check coordinator_ip=10.89.77.10 node_ip=10.89.77.20 offset=10000
podman network exists "$net" || podman network create --subnet 10.89.77.0/24 "$net" >/dev/null
/usr/bin/python3 "$here/deploy/container/render_pods.py" "$here/deploy/k8s" "$work/pods" \
  --ips "freekv-coordinator=$coordinator_ip,freekv-node=$node_ip" --secret-dir "$work/secret" \
  --models-dir "$work/models" --port-offset $offset >/dev/null
# podman 4.3 makes each emptyDir a named volume (named as in the manifest), on disk, owned by root, kept
# after `kube down`. So they are made here as the kubelet would: a `medium: Memory` emptyDir as a tmpfs
# volume owned by the pod's runAsUser and fsGroup (its sizeLimit is not enforced: podman 4.3 refuses a
# tmpfs size without filesystem quotas), made fresh before the pods start and removed after.
empty_dirs="$(/usr/bin/python3 -c 'import sys, yaml
for f in sys.argv[1:]:
    for d in yaml.safe_load_all(open(f)):
        if not d or d["kind"] != "Pod":
            continue
        sc = d["spec"].get("securityContext", {})
        for v in d["spec"].get("volumes", []):
            if "emptyDir" in v:
                if v["emptyDir"].get("medium") != "Memory":
                    sys.exit("container: only medium: Memory emptyDirs are made here: " + v["name"])
                print(v["name"], sc.get("runAsUser", 0), sc.get("fsGroup", 0))' "$work"/pods/*.yaml)"
remove_empty_dirs() {
  while read -r name _; do [ -z "$name" ] || podman volume rm -f "$name" >/dev/null 2>&1 || true; done <<<"$empty_dirs"
}
teardown() {
  podman kube down "$work/pods/freekv-node.yaml" >/dev/null 2>&1 || true
  podman kube down "$work/pods/freekv-coordinator.yaml" >/dev/null 2>&1 || true
  remove_empty_dirs
}
remove_empty_dirs
while read -r name uid gid; do
  podman volume create --opt type=tmpfs --opt device=tmpfs --opt "o=uid=$uid,gid=$gid,mode=2770" "$name" >/dev/null
done <<<"$empty_dirs"
if [ $keep = 0 ]; then trap 'teardown; "${sudo_cmd[@]}" rm -rf "$work"' EXIT; fi
podman kube play --network "$net" --ip "$coordinator_ip" "$work/pods/freekv-coordinator.yaml" >/dev/null
podman kube play --network "$net" --ip "$node_ip" "$work/pods/freekv-node.yaml" >/dev/null
grpc="127.0.0.1:$((50051 + offset))" http="127.0.0.1:$((8000 + offset))"
freekv="$here/build/bin/freekv"
admin() { "$freekv" admin "$@" --coordinator "$grpc" --token-file "$work/secret/token"; }
for _ in $(seq 120); do admin workers 2>/dev/null | grep -q "$node_ip:50052" && break; sleep 0.5; done
admin workers | grep -q "$node_ip:50052" || { podman logs freekv-node-worker | tail -20 >&2; fail "the worker never registered"; }
say "pods up: coordinator at $grpc (published), worker $node_ip:50052 registered"

prompt="The key is 48213. Remember it. What is the key? The key is"
"$freekv" generate --coordinator "$grpc" --session k8s-chat --new-session --prompt "$prompt" --max-tokens 24 \
  >"$work/turn1.out" 2>"$work/turn1.err" || { cat "$work/turn1.err" >&2; fail "the first turn failed"; }
say "turn 1 (streamed): $(tr '\n' ' ' <"$work/turn1.out")"
admin session k8s-chat --json >"$work/session.json"
read -r pages kvstore <<<"$(/usr/bin/python3 -c 'import json,sys
s = json.load(open(sys.argv[1]))["session"]
print(s["occupancy"]["host_pages"], s["summary"]["kvstore_id"])' "$work/session.json")"
[ "${pages:-0}" -gt 0 ] && [ "$kvstore" = freekv-node:freekv-pool ] \
  || { cat "$work/session.json" >&2; fail "admin session shows no KV pages in the node pod's kvstore"; }
say "admin session k8s-chat: $pages pages in kvstore $kvstore (the node pod's)"
# Scraped as Prometheus does, at the pods' addresses (the Service publishes only gRPC and HTTP).
for m in "$coordinator_ip:9400/metrics" "$node_ip:9401/metrics" "$node_ip:9402/metrics"; do
  curl -sf "http://$m" | grep -q '^freekv_' || fail "no freekv metrics at $m"
done
say "/metrics of the coordinator, the worker and the kvstore answer"
curl -sf "http://$http/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "The quick brown fox", "max_tokens": 8, "temperature": 0}' | grep -q '"text_completion"' \
  || fail "the HTTP API on the published port did not answer"
say "HTTP API on the published port answers"

# A crash, not a stop: SIGKILL to the worker's process (podman does not restart a container it was told
# to kill), so the pod's restartPolicy (Always) brings it back, as the kubelet would.
"${sudo_cmd[@]}" kill -9 "$(podman inspect freekv-node-worker --format '{{.State.Pid}}')"
killed=$SECONDS
for _ in $(seq 240); do
  sleep 0.5
  state="$(podman inspect freekv-node-worker --format '{{.State.Status}} {{.RestartCount}}' 2>/dev/null || true)"
  [ "${state%% *}" = running ] && [ "${state##* }" -ge 1 ] && admin workers 2>/dev/null | grep -q "$node_ip:50052 *ready" && break
done
admin workers | grep -q "$node_ip:50052 *ready" || fail "the worker did not come back after the kill ($state)"
say "worker container killed (SIGKILL) and restarted by its restart policy in $((SECONDS - killed)) s (restarts: ${state##* })"
"$freekv" generate --coordinator "$grpc" --session k8s-chat --prompt " And again, the key is" --max-tokens 8 \
  >"$work/turn2.out" 2>"$work/turn2.err" || { cat "$work/turn2.err" >&2; fail "the turn after the restart failed"; }
reused="$(sed -n 's/.*(\([0-9]*\) reused from the session).*/\1/p' "$work/turn2.err")"
[ "${reused:-0}" -gt 0 ] || { cat "$work/turn2.err" >&2; fail "the turn after the restart reused no KV"; }
say "turn 2 after the restart reused $reused tokens of KV: $(tr '\n' ' ' <"$work/turn2.out")"

# ---- 5. teardown
if [ $keep = 1 ]; then say "pods left running (--keep); files in $work"; exit 0; fi
teardown
trap '"${sudo_cmd[@]}" rm -rf "$work"' EXIT
left="$(podman ps -a --format '{{.Names}}' | grep freekv || true)"
[ -z "$left" ] || fail "containers left: $left"
podman pod exists freekv-node && fail "the node pod is left"
while read -r name _; do podman volume exists "$name" && fail "the volume $name is left"; done <<<"$empty_dirs"
ls /dev/shm | grep -q freekv && fail "a pool segment is left in /dev/shm: $(ls /dev/shm | grep freekv)"
say "teardown left no pod, container, volume or pool segment"
say passed
