// The kvstore's CUDA push path (kvstore/cuda_push.h) across two processes, as deployed: the worker
// (parent) exports a device staging area and interprocess events; the kvstore side (child) opens
// them, fills its host staging buffers and pushes them. For several rounds over every (pair, buffer)
// the worker waits on the buffer's event in its stream, reads the device buffer back and checks every
// byte, then releases the round. Exits 77 when no GPU is visible.
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "kvstore/cuda_push.h"
#include "tests/cuda/cuda_test_util.h"

namespace freekv {
namespace {

constexpr uint32_t kPairs = 2;
constexpr uint64_t kBufferBytes = 1 << 20;
constexpr int kRounds = 4;

uint8_t pattern(uint64_t i, int round, uint32_t pair, uint32_t buffer) {
  return uint8_t(i * 31 + uint64_t(round) * 7 + pair * 3 + buffer);
}
// Each round pushes a different length, so a stale tail would show.
uint64_t push_bytes(int round) { return kBufferBytes - uint64_t(round) * 4096 - 16; }

bool write_all(int fd, const void* p, size_t n) { return write(fd, p, n) == ssize_t(n); }
bool read_all(int fd, void* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = read(fd, static_cast<char*>(p) + got, n - got);
    if (r <= 0) return false;
    got += size_t(r);
  }
  return true;
}

// The kvstore side. Returns the process's exit code.
int kvstore_side(int from_worker, int to_worker) {
  uint8_t go = 0;
  if (!read_all(from_worker, &go, 1) || go == 0) return 0;  // no device: nothing to do
  kvstore::CudaPushSpec spec;
  spec.staging_handle.resize(sizeof(cudaIpcMemHandle_t));
  spec.event_handles.assign(kPairs * 2, std::string(sizeof(cudaIpcEventHandle_t), '\0'));
  if (!read_all(from_worker, spec.staging_handle.data(), spec.staging_handle.size())) return 2;
  for (auto& h : spec.event_handles) {
    if (!read_all(from_worker, h.data(), h.size())) return 2;
  }
  std::vector<uint8_t> host(kPairs * 2 * kBufferBytes + 4096);
  uint8_t* staging = host.data() + (4096 - reinterpret_cast<uintptr_t>(host.data()) % 4096) % 4096;
  auto pusher = kvstore::make_cuda_pusher(spec, staging, kPairs, kBufferBytes);
  if (!pusher.ok()) {
    std::fprintf(stderr, "make_cuda_pusher: %s\n", pusher.status().ToString().c_str());
    return 3;
  }
  for (int round = 0; round < kRounds; ++round) {
    for (uint32_t p = 0; p < kPairs; ++p) {
      for (uint32_t b = 0; b < 2; ++b) {
        if (!(*pusher)->before_fill(p, b).ok()) return 4;
        uint8_t* buf = staging + (p * 2 + b) * kBufferBytes;
        for (uint64_t i = 0; i < push_bytes(round); ++i) buf[i] = pattern(i, round, p, b);
        const absl::Status s = (*pusher)->push(p, b, buf, push_bytes(round));
        if (!s.ok()) {
          std::fprintf(stderr, "push: %s\n", s.ToString().c_str());
          return 5;
        }
      }
    }
    uint8_t done = uint8_t(round), ack = 0;
    if (!write_all(to_worker, &done, 1) || !read_all(from_worker, &ack, 1)) return 6;
  }
  return 0;
}

bool worker_side(int to_kvstore, int from_kvstore) {
  uint8_t* staging = nullptr;
  CUDA_OK(cudaMalloc(&staging, kPairs * 2 * kBufferBytes));
  cudaIpcMemHandle_t mh;
  CUDA_OK(cudaIpcGetMemHandle(&mh, staging));
  std::vector<cudaEvent_t> events(kPairs * 2);
  std::vector<cudaIpcEventHandle_t> eh(kPairs * 2);
  for (size_t i = 0; i < events.size(); ++i) {
    CUDA_OK(cudaEventCreateWithFlags(&events[i], cudaEventInterprocess | cudaEventDisableTiming));
    CUDA_OK(cudaIpcGetEventHandle(&eh[i], events[i]));
  }
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const uint8_t go = 1;
  bool sent = write_all(to_kvstore, &go, 1) && write_all(to_kvstore, &mh, sizeof mh);
  for (auto& h : eh) sent = sent && write_all(to_kvstore, &h, sizeof h);
  if (!sent) return false;
  std::vector<uint8_t> back(kBufferBytes);
  int bad = 0;
  for (int round = 0; round < kRounds; ++round) {
    uint8_t done = 0;
    if (!read_all(from_kvstore, &done, 1) || done != round) {
      std::printf("kvstore side stopped before round %d FAILED\n", round);
      return false;
    }
    for (uint32_t p = 0; p < kPairs; ++p) {
      for (uint32_t b = 0; b < 2; ++b) {
        // The worker's stream waits on the kvstore's record, then reads: no host synchronisation
        // with the other process beyond the round's message.
        CUDA_OK(cudaStreamWaitEvent(stream, events[p * 2 + b], 0));
        CUDA_OK(cudaMemcpyAsync(back.data(), staging + (p * 2 + b) * kBufferBytes, push_bytes(round),
                                cudaMemcpyDeviceToHost, stream));
        CUDA_OK(cudaStreamSynchronize(stream));
        for (uint64_t i = 0; i < push_bytes(round); ++i) bad += back[i] != pattern(i, round, p, b);
      }
    }
    const uint8_t ack = 1;
    if (!write_all(to_kvstore, &ack, 1)) return false;
  }
  std::printf("%-48s %d rounds x %u buffers, %d wrong bytes %s\n", "CUDA IPC push (kvstore -> worker staging)", kRounds,
              kPairs * 2, bad, bad == 0 ? "ok" : "FAILED");
  cuda_test::failures += bad == 0 ? 0 : 1;
  for (cudaEvent_t e : events) cudaEventDestroy(e);
  cudaStreamDestroy(stream);
  cudaFree(staging);
  return bad == 0;
}

}  // namespace
}  // namespace freekv

int main() {
  // Fork before any CUDA call: a child cannot use CUDA that its parent initialised.
  int to_child[2], to_parent[2];
  if (pipe(to_child) != 0 || pipe(to_parent) != 0) return 2;
  const pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) _exit(freekv::kvstore_side(to_child[0], to_parent[1]));
  if (freekv::cuda_device_count() == 0) {
    const uint8_t stop = 0;
    (void)!write(to_child[1], &stop, 1);
    waitpid(pid, nullptr, 0);
    std::printf("no CUDA device visible: skipping\n");
    return 77;
  }
  if (!freekv::worker_side(to_child[1], to_parent[0])) ++freekv::cuda_test::failures;
  close(to_child[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::printf("kvstore side exited with status %d FAILED\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ++freekv::cuda_test::failures;
  }
  std::printf("%d failure(s)\n", freekv::cuda_test::failures);
  return freekv::cuda_test::failures == 0 ? 0 : 1;
}
