// The kvstore's CUDA push path (kvstore/cuda_push.h) across two processes, as deployed: the worker
// (parent) exports a device staging area and interprocess events; the kvstore side (child) registers
// its pool, opens them, and pushes lists of chunks (scattered, adjacent, repeated; a different list per
// round and buffer) from the pool. For several rounds over every (pair, buffer) the worker waits on
// the buffer's event in its stream, reads the device buffer back and checks every byte against the
// chunks it was told, then releases the round. A chunk outside the pool is refused. Exits 77 when no
// GPU is visible.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kvstore/cuda_push.h"
#include "tests/cuda/cuda_test_util.h"

namespace freekv {
namespace {

constexpr uint32_t kPairs = 2;
constexpr uint64_t kBufferBytes = 1 << 20;
constexpr uint64_t kChunkBytes = 16384;
constexpr uint64_t kPoolChunks = 512;
constexpr int kRounds = 4;

// Byte i of pool chunk c.
uint8_t pool_byte(uint64_t c, uint64_t i) { return uint8_t(c * 131 + i * 7 + (i >> 9)); }

// The chunks pushed into (pair, buffer) in a round: a different count each round and buffer, a
// mix of scattered, adjacent and repeated chunks, the same on both sides of the pipe.
std::vector<uint32_t> chunks_for(int round, uint32_t pair, uint32_t buffer) {
  const uint32_t n = uint32_t(kBufferBytes / kChunkBytes) - uint32_t(round) * 5 - pair - buffer;
  std::vector<uint32_t> ids(n);
  for (uint32_t i = 0; i < n; ++i) {
    ids[i] = i % 4 == 3 ? ids[i - 1] + 1                                           // adjacent to the last
           : i % 7 == 6 ? ids[i - 1]                                               // the same chunk again
                        : uint32_t((i * 97 + uint32_t(round) * 31 + pair * 13 + buffer * 5) % (kPoolChunks - 1));
  }
  return ids;
}

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
  const uint64_t pool_bytes = kPoolChunks * kChunkBytes;
  auto* pool = static_cast<uint8_t*>(std::aligned_alloc(4096, pool_bytes));
  for (uint64_t c = 0; c < kPoolChunks; ++c) {
    for (uint64_t i = 0; i < kChunkBytes; ++i) pool[c * kChunkBytes + i] = pool_byte(c, i);
  }
  int code = 0;
  if (const absl::Status r = kvstore::cuda_register_host(pool, pool_bytes); !r.ok()) {
    std::fprintf(stderr, "cuda_register_host: %s\n", r.ToString().c_str());
    code = 3;
  }
  auto pusher = code == 0 ? kvstore::make_cuda_pusher(spec, kPairs, kBufferBytes, pool, pool_bytes)
                          : absl::StatusOr<std::unique_ptr<kvstore::StagingPusher>>(absl::UnknownError("no pool"));
  if (code == 0 && !pusher.ok()) {
    std::fprintf(stderr, "make_cuda_pusher: %s\n", pusher.status().ToString().c_str());
    code = 3;
  }
  // A chunk outside the pool is refused before anything is copied.
  if (code == 0) {
    const uint8_t* outside = pool + pool_bytes;
    if ((*pusher)->push_chunks(0, 0, &outside, 1, kChunkBytes).ok()) code = 7;
  }
  for (int round = 0; code == 0 && round < kRounds; ++round) {
    for (uint32_t p = 0; p < kPairs && code == 0; ++p) {
      for (uint32_t b = 0; b < 2 && code == 0; ++b) {
        std::vector<const uint8_t*> chunks;
        for (uint32_t c : chunks_for(round, p, b)) chunks.push_back(pool + c * kChunkBytes);
        const absl::Status st = (*pusher)->push_chunks(p, b, chunks.data(), uint32_t(chunks.size()), kChunkBytes);
        if (!st.ok()) {
          std::fprintf(stderr, "push_chunks: %s\n", st.ToString().c_str());
          code = 5;
        }
      }
    }
    uint8_t done = uint8_t(round), ack = 0;
    if (code == 0 && (!write_all(to_worker, &done, 1) || !read_all(from_worker, &ack, 1))) code = 6;
  }
  if (pusher.ok()) pusher->reset();
  kvstore::cuda_unregister_host(pool);
  std::free(pool);
  return code;
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
  size_t pushed = 0;
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
        CUDA_OK(cudaMemcpyAsync(back.data(), staging + (p * 2 + b) * kBufferBytes, kBufferBytes,
                                cudaMemcpyDeviceToHost, stream));
        CUDA_OK(cudaStreamSynchronize(stream));
        const std::vector<uint32_t> ids = chunks_for(round, p, b);
        for (size_t c = 0; c < ids.size(); ++c) {
          for (uint64_t i = 0; i < kChunkBytes; ++i) bad += back[c * kChunkBytes + i] != pool_byte(ids[c], i);
        }
        pushed += ids.size();
      }
    }
    const uint8_t ack = 1;
    if (!write_all(to_kvstore, &ack, 1)) return false;
  }
  std::printf("%-48s %d rounds x %u buffers, %zu chunks, %d wrong bytes %s\n", "CUDA IPC push (kvstore pool -> worker)",
              kRounds, kPairs * 2, pushed, bad, bad == 0 ? "ok" : "FAILED");
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
  if (pid == 0) {
    close(to_child[1]);
    close(to_parent[0]);
    _exit(freekv::kvstore_side(to_child[0], to_parent[1]));
  }
  close(to_child[0]);  // so that a read sees the other side's exit as end of file
  close(to_parent[1]);
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
