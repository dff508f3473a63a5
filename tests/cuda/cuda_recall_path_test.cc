// Recall into device memory through a real freekv-kvstore process: a worker attached with
// KvstoreClient::Options::cuda_device = 0 offloads pages and recalls random (page, KV head) chunks,
// more than one staging buffer's worth at a time so both buffers of a pair alternate, and every
// recalled chunk, read back from the device, must equal what was offloaded; a CPU worker attached to
// the same kvstore does the same through shared memory in between. Exits 77 when no GPU is visible.
#include <cuda_runtime.h>

#include <cstdio>
#include <random>

#include "tests/cuda/cuda_test_util.h"
#include "tests/integration/kvstore_test_util.h"
#include "tools/kvstore_process.h"
#include "worker/kv/kvstore_client.h"

namespace freekv {
namespace {

const KvSessionGeometry kGeo{2, 8, 128, 16, DType::kBF16};  // chunk 8 KiB, page 64 KiB
constexpr int64_t kPages = 48;

bool write_pages(KvstoreClient* c, const std::string& id, SessionRef ref) {
  for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
    for (int64_t p = 0; p < kPages; p += 16) {
      auto blocks = c->pages_for_write(ref, int(l), p, 16);
      if (!blocks.ok()) {
        std::printf("pages_for_write: %s FAILED\n", blocks.status().ToString().c_str());
        return false;
      }
      for (int i = 0; i < 16; ++i) testing::fill_page(id, int(l), p + i, (*blocks)[size_t(i)], kGeo.page_bytes());
      if (!c->commit_pages(ref, int(l), p, 16).ok()) return false;
    }
  }
  return true;
}

// One recall of `items` of `layer`; returns the number of wrong chunks (−1 when the recall failed).
int64_t recall_and_count_wrong(KvstoreClient* c, const std::string& id, SessionRef ref, int layer,
                               const std::vector<RecallItem>& items) {
  auto t = c->post_recall(ref, layer, items);
  if (!t.ok()) return -1;
  std::vector<uint8_t> host(kGeo.chunk_bytes());
  int64_t wrong = 0;
  const absl::Status s = c->wait_recall(*t, [&](int64_t i, const uint8_t* chunk) {
    const uint8_t* bytes = chunk;
    if (c->recalls_to_device()) {
      if (cudaMemcpy(host.data(), chunk, host.size(), cudaMemcpyDeviceToHost) != cudaSuccess) ++wrong;
      bytes = host.data();
    }
    const RecallItem& it = items[size_t(i)];
    wrong += testing::check_chunk(id, layer, it.page, it.kv_head, kGeo.chunk_bytes(), kGeo.page_bytes(), bytes) != -1;
  });
  if (!s.ok()) std::printf("recall: %s\n", s.ToString().c_str());
  return s.ok() ? wrong : -1;
}

void run() {
  auto kvstore = KvstoreProcess::start("128MiB", "96KiB");
  if (!kvstore.ok()) {
    std::printf("starting freekv-kvstore: %s FAILED\n", kvstore.status().ToString().c_str());
    ++cuda_test::failures;
    return;
  }
  KvstoreClient::Options o;
  o.worker_name = "gpu";
  o.staging_pairs = 2;
  o.staging_buffer_bytes = 256 << 10;  // 32 chunks: a recall of 100 items takes four buffers
  o.cuda_device = 0;
  auto gpu = KvstoreClient::connect((*kvstore)->socket_path(), o);
  o.worker_name = "cpu";
  o.cuda_device = -1;
  auto cpu = KvstoreClient::connect((*kvstore)->socket_path(), o);
  if (!gpu.ok() || !cpu.ok()) {
    std::printf("attach: %s / %s FAILED\n", gpu.status().ToString().c_str(), cpu.status().ToString().c_str());
    ++cuda_test::failures;
    return;
  }
  auto a = (*gpu)->open_session("a", kGeo, true);
  auto b = (*cpu)->open_session("b", kGeo, true);
  if (!a.ok() || !b.ok() || !write_pages(gpu->get(), "a", a->ref) || !write_pages(cpu->get(), "b", b->ref)) {
    std::printf("sessions could not be written FAILED\n");
    ++cuda_test::failures;
    return;
  }
  std::mt19937 rng(5);
  int64_t chunks = 0, wrong = 0, failed = 0;
  for (int round = 0; round < 6; ++round) {
    std::vector<RecallItem> items(100);
    for (auto& it : items) it = RecallItem{uint32_t(rng() % kGeo.n_kv_heads), uint32_t(rng() % kPages)};
    const int layer = round % 2;
    const int64_t g = recall_and_count_wrong(gpu->get(), "a", a->ref, layer, items);
    const int64_t c = recall_and_count_wrong(cpu->get(), "b", b->ref, layer, items);
    failed += (g < 0) + (c < 0);
    wrong += std::max<int64_t>(0, g) + std::max<int64_t>(0, c);
    chunks += int64_t(items.size());
  }
  const bool ok = failed == 0 && wrong == 0 && (*gpu)->recalls_to_device();
  std::printf("%-48s %lld chunks each, %lld wrong, %lld failed recalls %s\n",
              "recall into device memory through freekv-kvstore", (long long)chunks, (long long)wrong,
              (long long)failed, ok ? "ok" : "FAILED");
  cuda_test::failures += ok ? 0 : 1;
}

}  // namespace
}  // namespace freekv

int main() { return freekv::cuda_test::run_cuda_tests(freekv::run); }
