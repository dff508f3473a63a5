#!/usr/bin/env bash
# The one-shot GPU validation.
#
#   scripts/gpu-check.sh bundle        Here (any machine with nvcc): builds with CUDA and copies the GPU
#                                      tests, the GPU benchmarks, freekv-kvstore and the shared libraries a
#                                      bare CUDA host may lack (gRPC, Abseil, OpenBLAS, oneDNN...; not the CUDA
#                                      libraries) into one tarball, .gpu-bundle.tar.xz (carried to the host).
#   scripts/gpu-check.sh run OUT_DIR   On the GPU host: runs every CUDA test, compute-sanitizer's memcheck
#                                      and racecheck over the kernel tests, and the GPU benchmarks; writes
#                                      nvidia-smi.txt, tests.log, sanitizer.log, gpu-bench.json,
#                                      gpu-recall-bench.json, gpu-decode-bench.json, cli.log (freekv run on
#                                      the GPU and the CPU) and summary.txt into OUT_DIR. Uses
#                                      .gpu-bundle.tar.xz when present, else the build's own binaries
#                                      (build/bin, after scripts/build.sh there).
#
# Exits non-zero when no GPU is visible (saying so), or when any test or check fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle_file="$root/.gpu-bundle.tar.xz"
tests=(cuda_ops_test cuda_attention_test cuda_retrieval_test cuda_forward_test cuda_engine_test cuda_ipc_push_test
       cuda_recall_path_test)

make_bundle() {
  BUILD_DIR="${BUILD_DIR:-$root/build}" "$root/scripts/build.sh" -DFREEKV_CUDA=ON
  local bin="${BUILD_DIR:-$root/build}/bin" bundle
  bundle="$(mktemp -d)"
  mkdir -p "$bundle/bin" "$bundle/lib"
  # freekv-kvstore rides along (the recall-path test and benchmark start it from beside themselves), and
  # the CLI and the services, for `freekv run` and a freekv-worker on the GPU with the shipped model.
  for b in "${tests[@]}" gpu_bench gpu_recall_bench gpu_decode_bench freekv-kvstore freekv freekv-coordinator \
           freekv-worker; do cp "$bin/$b" "$bundle/bin/"; done
  # Libraries the binaries load, less the C/C++ runtime every Linux host has and the CUDA libraries,
  # which must be the GPU host's own (they match its driver).
  ldd "$bundle"/bin/* | awk '/=> \//{print $3}' | sort -u |
    grep -Ev '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so|/libcu(blas|blasLt|dart)\.so' |
    while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
  { git -C "$root" rev-parse HEAD; git -C "$root" status --porcelain | grep -q . && echo "dirty" || echo "clean"; } \
    >"$bundle/COMMIT"
  strip "$bundle"/bin/*
  # xz: the binaries carry kernels for two GPU generations; gzip would make the bundle twice as large.
  tar -C "$bundle" -cf - . | xz -T2 -6 >"$bundle_file"
  echo "bundle: $bundle_file, $(du -h "$bundle_file" | cut -f1) ($(du -sh "$bundle" | cut -f1) unpacked) at" \
    "$(head -1 "$bundle/COMMIT") ($(tail -1 "$bundle/COMMIT") tree)"
  rm -rf "$bundle"
}

# The directory holding a library, searched where CUDA hosts keep it (toolkit, driver, pip wheels).
find_lib_dir() {
  local f
  f="$(find /usr/local/cuda/lib64 /usr/local/cuda/targets /usr/local/nvidia /usr/lib /opt /usr/local/lib \
         -name "$1" 2>/dev/null | head -1 || true)"
  [[ -n "$f" ]] && dirname "$f"
}

# A coordinator and a freekv-worker on `device` (no kvstore: the GPU worker has no sessions yet), one
# greedy request through the public API with `freekv generate`; prints its JSON lines.
service_check() {
  local bin="$1" device="$2" dir pids=() rc=0
  dir="$(mktemp -d)"
  "$bin/freekv-coordinator" --listen 127.0.0.1:0 --address_file "$dir/coordinator" 2>"$dir/coordinator.log" &
  pids+=($!)
  for _ in $(seq 100); do [[ -s "$dir/coordinator" ]] && break; sleep 0.1; done
  "$bin/freekv-worker" --device "$device" --model "$root/models/freekv-tiny" --listen 127.0.0.1:0 \
    --coordinator "$(cat "$dir/coordinator")" --address_file "$dir/worker" 2>"$dir/worker.log" &
  pids+=($!)
  for _ in $(seq 300); do [[ -s "$dir/worker" ]] && break; sleep 0.1; done
  sleep 1  # the registration reaches the coordinator after the worker serves
  timeout 60 "$bin/freekv" generate --coordinator "$(cat "$dir/coordinator")" --max-tokens 24 --json \
    --prompt "The key is 48213. Remember it. What is the key? The key is" || rc=$?
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  [[ $rc -eq 0 ]] || cat "$dir/coordinator.log" "$dir/worker.log"
  rm -rf "$dir"
  return $rc
}

run_checks() {
  local out="$1" bin commit status=0
  mkdir -p "$out"
  if ! nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
    echo "gpu-check: no GPU visible here (nvidia-smi failed; see $out/nvidia-smi.txt): nothing was checked" | tee "$out/summary.txt"
    exit 1
  fi
  if [[ -f "$bundle_file" ]]; then
    local bundle
    bundle="$(mktemp -d)"
    tar -C "$bundle" -xJf "$bundle_file"
    bin="$bundle/bin"
    commit="$(head -1 "$bundle/COMMIT") ($(tail -1 "$bundle/COMMIT") tree)"
    export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    bin="${BUILD_DIR:-$root/build}/bin"
    commit="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
  fi
  local cublas
  cublas="$(find_lib_dir libcublas.so.13 || true)"
  [[ -n "$cublas" ]] && export LD_LIBRARY_PATH="$cublas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  {
    echo "commit: $commit"
    for t in "${tests[@]}"; do
      echo "== $t"
      if timeout 120 "$bin/$t"; then echo "== $t: passed"; else echo "== $t: FAILED (exit $?)"; status=1; fi
    done
  } 2>&1 | tee "$out/tests.log"
  # What a user runs: the shipped model through `freekv run` on the GPU and on the CPU, greedy.
  {
    for device in cuda:0 cpu; do
      echo "== freekv run --device $device"
      if timeout 120 "$bin/freekv" run --model "$root/models/freekv-tiny" --device "$device" --max-tokens 48 \
           --prompt "The key is 48213. Remember it. What is the key? The key is" --json; then
        echo "== freekv run --device $device: passed"
      else
        echo "== freekv run --device $device: FAILED (exit $?)"
      fi
    done
    for device in cuda:0 cpu; do
      echo "== freekv-worker --device $device, request through the coordinator"
      if service_check "$bin" "$device"; then
        echo "== freekv-worker --device $device: passed"
      else
        echo "== freekv-worker --device $device: FAILED"
      fi
    done
  } 2>&1 | tee "$out/cli.log"
  grep -q "FAILED" "$out/tests.log" "$out/cli.log" && status=1
  # The benchmark before the sanitizer, so that its figures come back even if the checks run long.
  timeout 240 "$bin/gpu_bench" --commit "$commit" >"$out/gpu-bench.json" || { echo "gpu_bench FAILED (exit $?)"; status=1; }
  timeout 120 "$bin/gpu_recall_bench" --commit "$commit" >"$out/gpu-recall-bench.json" ||
    { echo "gpu_recall_bench FAILED (exit $?)"; status=1; }
  # The forward pass's decode traffic against the HBM read rate gpu_bench just measured.
  local hbm
  hbm="$(grep -o '"hbm_read_gb_per_s": [0-9.]*' "$out/gpu-bench.json" | grep -o '[0-9.]*$' || echo 0)"
  timeout 240 "$bin/gpu_decode_bench" --commit "$commit" --hbm-read-gbps "${hbm:-0}" >"$out/gpu-decode-bench.json" ||
    { echo "gpu_decode_bench FAILED (exit $?)"; status=1; }
  local sanitizer
  sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)"
  if [[ -n "$sanitizer" ]]; then
    {
      for t in cuda_ops_test cuda_attention_test cuda_retrieval_test; do
        for tool in memcheck racecheck; do
          echo "== $tool $t"
          # racecheck leaves out the cuBLAS cases: cuBLAS's own GEMM kernels (nvjet_*) are reported as
          # racing, and its kernel filter crashed them; every kernel of ours is checked.
          local no_cublas=""
          [[ $tool == racecheck ]] && no_cublas=1
          FREEKV_CUDA_TEST_NO_CUBLAS=$no_cublas timeout 90 "$sanitizer" --tool "$tool" --error-exitcode 9 "$bin/$t" >"$out/.san" 2>&1 && echo "== $tool $t: clean" ||
            { echo "== $tool $t: FAILED"; cat "$out/.san"; status=1; }
        done
      done
      # The whole forward pass under memcheck (cuBLAS included; racecheck covers our kernels above).
      echo "== memcheck cuda_forward_test"
      timeout 120 "$sanitizer" --tool memcheck --error-exitcode 9 "$bin/cuda_forward_test" >"$out/.san" 2>&1 &&
        echo "== memcheck cuda_forward_test: clean" ||
        { echo "== memcheck cuda_forward_test: FAILED"; cat "$out/.san"; status=1; }
    } 2>&1 | tee "$out/sanitizer.log"
    rm -f "$out/.san"
    grep -q "FAILED" "$out/sanitizer.log" && status=1
  else
    echo "compute-sanitizer not found on this host: memcheck and racecheck did not run" | tee "$out/sanitizer.log"
    status=1
  fi
  {
    echo "gpu-check at $commit on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
    grep -E "^== .*(passed|FAILED|clean)" "$out/tests.log" "$out/cli.log" "$out/sanitizer.log" | sed 's/^[^:]*://'
    [[ $status -eq 0 ]] && echo "all passed" || echo "FAILURES above"
  } | tee "$out/summary.txt"
  return $status
}

case "${1:-}" in
  bundle) make_bundle ;;
  run) [[ $# -eq 2 ]] || { echo "usage: $0 run OUT_DIR" >&2; exit 2; }; run_checks "$2" ;;
  *) echo "usage: $0 bundle | run OUT_DIR" >&2; exit 2 ;;
esac
