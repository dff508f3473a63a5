// Recall through the kvstore path on a GPU (run by scripts/gpu-check.sh, never by ctest): a private
// freekv-kvstore with its pool registered with CUDA, workers attached with device staging (4 MiB and
// 16 MiB buffers: the kvstore finishes each buffer's copy before handing it over, so the buffer size
// sets how much of a recall is per-buffer overhead) and one through shared memory; 4096 random 16 KiB
// chunks (64 MiB) per recall, timed from post to the last buffer handed over, against one contiguous
// pinned host-to-device copy of the same bytes in the same run. Prints one JSON object.
// Usage: gpu_recall_bench [--commit SHA]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tools/kvstore_process.h"
#include "worker/kv/kvstore_client.h"

namespace freekv {
namespace {

const KvSessionGeometry kGeo{1, 8, 128, 32, DType::kBF16};  // chunk 16 KiB, page 128 KiB
constexpr int64_t kPages = 1024;
constexpr size_t kItems = 4096;
constexpr int kReps = 7;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int fail(const std::string& what) {
  std::fprintf(stderr, "gpu_recall_bench: %s\n", what.c_str());
  return 1;
}

// Median milliseconds of one recall of `items`, after one untimed.
absl::StatusOr<double> time_recalls(KvstoreClient* c, SessionRef ref, const std::vector<RecallItem>& items) {
  std::vector<double> ms;
  for (int r = 0; r <= kReps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    FREEKV_ASSIGN_OR_RETURN(uint64_t ticket, c->post_recall(ref, 0, items));
    FREEKV_RETURN_IF_ERROR(c->wait_recall(ticket, [](int64_t, const uint8_t*) {}));
    if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(ms);
}

int run(const std::string& commit) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return fail("no CUDA device visible");
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  auto kvstore = KvstoreProcess::start("1GiB", "144KiB");
  if (!kvstore.ok()) return fail(kvstore.status().ToString());
  KvstoreClient::Options o;
  o.staging_pairs = 2;
  o.staging_buffer_bytes = 4 << 20;
  o.worker_name = "cpu";
  auto cpu = KvstoreClient::connect((*kvstore)->socket_path(), o);
  if (!cpu.ok()) return fail("attach: " + cpu.status().ToString());
  auto s = (*cpu)->open_session("bench", kGeo, true);
  if (!s.ok()) return fail(s.status().ToString());
  for (int64_t p = 0; p < kPages; p += 16) {
    auto blocks = (*cpu)->pages_for_write(s->ref, 0, p, 16);
    if (!blocks.ok()) return fail(blocks.status().ToString());
    for (uint8_t* b : *blocks) std::memset(b, int(p % 251), kGeo.page_bytes());
    if (!(*cpu)->commit_pages(s->ref, 0, p, 16).ok()) return fail("commit");
  }
  std::mt19937 rng(7);
  std::vector<RecallItem> items(kItems);
  for (auto& it : items) it = RecallItem{uint32_t(rng() % kGeo.n_kv_heads), uint32_t(rng() % kPages)};
  auto cpu_ms = time_recalls(cpu->get(), s->ref, items);
  if (!cpu_ms.ok()) return fail(cpu_ms.status().ToString());
  std::vector<std::pair<uint64_t, double>> device_ms;  // (staging buffer bytes, ms)
  for (uint64_t buffer : {uint64_t(4) << 20, uint64_t(16) << 20}) {
    o.worker_name = "gpu";
    o.staging_buffer_bytes = buffer;
    o.cuda_device = 0;
    auto gpu = KvstoreClient::connect((*kvstore)->socket_path(), o);
    if (!gpu.ok()) return fail("attach: " + gpu.status().ToString());
    auto sg = (*gpu)->open_session("bench", kGeo, false);
    if (!sg.ok()) return fail(sg.status().ToString());
    auto ms = time_recalls(gpu->get(), sg->ref, items);
    if (!ms.ok()) return fail(ms.status().ToString());
    device_ms.emplace_back(buffer, *ms);
  }
  // The ceiling: the same bytes in one pinned host-to-device copy.
  const size_t bytes = kItems * kGeo.chunk_bytes();
  void *host = nullptr, *dev = nullptr;
  if (cudaHostAlloc(&host, bytes, cudaHostAllocPortable) != cudaSuccess || cudaMalloc(&dev, bytes) != cudaSuccess) {
    return fail("cannot allocate the reference copy's buffers");
  }
  std::memset(host, 1, bytes);
  std::vector<double> copy_ms;
  for (int r = 0; r <= kReps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice);
    if (r > 0) copy_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  cudaFreeHost(host);
  cudaFree(dev);
  const double copy = median(copy_ms);
  auto gbps = [&](double ms) { return double(bytes) / ms / 1e6; };
  std::string to_device;
  for (const auto& [buffer, ms] : device_ms) {
    to_device += std::string(to_device.empty() ? "" : ", ") + "{\"staging_buffer_bytes\": " + std::to_string(buffer) +
                 ", \"ms\": " + std::to_string(ms) + ", \"gb_per_s\": " + std::to_string(gbps(ms)) +
                 ", \"fraction_of_contiguous\": " + std::to_string(gbps(ms) / gbps(copy)) + "}";
  }
  std::printf("{\"bench\": \"gpu-recall\", \"device\": \"%s\", \"commit\": \"%s\", \"chunk_bytes\": %llu, \"chunks\": %zu, "
              "\"recall_to_device\": [%s], \"recall_to_shared_memory_ms\": %.3f, "
              "\"recall_to_shared_memory_gb_per_s\": %.2f, \"contiguous_pinned_h2d_ms\": %.3f, "
              "\"contiguous_pinned_h2d_gb_per_s\": %.2f}\n",
              prop.name, commit.c_str(), (unsigned long long)kGeo.chunk_bytes(), kItems, to_device.c_str(), *cpu_ms,
              gbps(*cpu_ms), copy, gbps(copy));
  return 0;
}

}  // namespace
}  // namespace freekv

int main(int argc, char** argv) {
  std::string commit = "unknown";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--commit") == 0 && i + 1 < argc) {
      commit = argv[++i];
    } else {
      std::fprintf(stderr, "usage: gpu_recall_bench [--commit SHA]\n");
      return 2;
    }
  }
  return freekv::run(commit);
}
