// GPU benchmark (run by scripts/gpu-check.sh, never by ctest): the ceilings of the machine and the
// kernels measured against them in one run, printed as one JSON object.
//   - pinned host → device copies for 16 KiB … 64 MiB blocks, one cudaMemcpyAsync per block;
//   - a read-only HBM kernel and a device-to-device copy (the memory ceilings);
//   - decode attention over the paged layout at 32K context, Llama-3.1-8B's attention shape (32 query
//     heads, 8 KV heads of 128, bf16 KV, 16-token pages), batch 1/4/8, dense and at a 2048-token budget,
//     as GB/s of KV read and as a fraction of the HBM read rate;
//   - decode GEMV and prefill GEMM at the 8B's MLP shape;
//   - one layer's retrieval step on the device (scores, top-k, membership) at 32K;
//   - recall of scattered 16 KiB chunks from a registered host pool, by every way of moving them.
// Usage: gpu_bench [--commit SHA] [--quick]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/ops_cuda.h"

namespace freekv {
namespace {

bool quick = false;

#define BENCH_CHECK(expr)                                                                              \
  do {                                                                                                 \
    cudaError_t e_ = (expr);                                                                           \
    if (e_ != cudaSuccess) {                                                                           \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_));     \
      std::exit(1);                                                                                    \
    }                                                                                                  \
  } while (0)

// Median milliseconds of `reps` timed runs of f (after two warm-ups), each timed by events on stream.
template <typename F>
double median_ms(int reps, cudaStream_t stream, F&& f) {
  cudaEvent_t a, b;
  BENCH_CHECK(cudaEventCreate(&a));
  BENCH_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 2; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    BENCH_CHECK(cudaEventRecord(a, stream));
    f();
    BENCH_CHECK(cudaEventRecord(b, stream));
    BENCH_CHECK(cudaEventSynchronize(b));
    float t = 0;
    BENCH_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

__global__ void read_kernel(const uint4* p, int64_t n, uint32_t* sink) {
  uint32_t x = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x12345678u) sink[0] = x;  // keeps the loads alive
}

// A read-only kernel over 4 GiB of device memory: the HBM ceiling, and a stand-in for decode (bound by
// HBM reads too) beside the recall gather.
class HbmReader {
 public:
  explicit HbmReader(int multiprocessors) : sms_(multiprocessors) {
    BENCH_CHECK(cudaMalloc(&buf_, kBytes));
    BENCH_CHECK(cudaMalloc(&sink_, 4));
    BENCH_CHECK(cudaMemset(buf_, 1, kBytes));
  }
  ~HbmReader() {
    cudaFree(buf_);
    cudaFree(sink_);
  }
  void launch(cudaStream_t stream) const {
    read_kernel<<<unsigned(sms_ * 8), 512, 0, stream>>>(static_cast<const uint4*>(buf_), int64_t(kBytes / 16), sink_);
  }
  void* buffer() const { return buf_; }
  static constexpr size_t kBytes = size_t(4) << 30;

 private:
  int sms_;
  void* buf_ = nullptr;
  uint32_t* sink_ = nullptr;
};

std::string h2d_table(cudaStream_t stream) {
  const size_t total = size_t(256) << 20;
  void *host = nullptr, *dev = nullptr;
  BENCH_CHECK(cudaHostAlloc(&host, total, cudaHostAllocPortable));
  BENCH_CHECK(cudaMalloc(&dev, total));
  std::memset(host, 1, total);
  std::string out = "[";
  for (size_t block = size_t(16) << 10; block <= (size_t(64) << 20); block *= 4) {
    const size_t calls = total / block;
    const double ms = median_ms(quick ? 3 : 5, stream, [&] {
      for (size_t i = 0; i < calls; ++i) {
        BENCH_CHECK(cudaMemcpyAsync(static_cast<char*>(dev) + i * block, static_cast<char*>(host) + i * block, block,
                                    cudaMemcpyHostToDevice, stream));
      }
    });
    char row[160];
    std::snprintf(row, sizeof row, "%s{\"block_bytes\": %zu, \"calls\": %zu, \"ms\": %.4f, \"gb_per_s\": %.2f}",
                  out.size() > 1 ? ", " : "", block, calls, ms, double(total) / ms / 1e6);
    out += row;
  }
  cudaFreeHost(host);
  cudaFree(dev);
  return out + "]";
}

// Read-only kernel over 4 GiB and a device-to-device copy of 2 GiB (bytes read + written).
void memory_ceilings(cudaStream_t stream, int sms, double* read_gbps, double* copy_gbps) {
  const HbmReader reader(sms);
  const double ms = median_ms(10, stream, [&] { reader.launch(stream); });
  *read_gbps = double(HbmReader::kBytes) / ms / 1e6;
  const size_t half = HbmReader::kBytes / 2;
  char* buf = static_cast<char*>(reader.buffer());
  const double cms = median_ms(10, stream, [&] {
    BENCH_CHECK(cudaMemcpyAsync(buf + half, buf, half, cudaMemcpyDeviceToDevice, stream));
  });
  *copy_gbps = 2.0 * double(half) / cms / 1e6;
}

// Decode attention: batch sequences × 8 KV heads, each row attending `tokens` tokens of a 32K pool.
std::string decode_attention(cudaStream_t stream, int sms, double hbm_read_gbps) {
  const int64_t n_heads = 32, n_kv = 8, hd = 128, pt = 16, context = 32768;
  const int64_t chunk_elems = 2 * pt * hd;
  std::string out = "[";
  std::mt19937 rng(1);
  for (int64_t batch : {1, 4, 8}) {
    const int64_t rows = batch * n_kv, pool_chunks = rows * (context / pt);
    void* pool = nullptr;
    BENCH_CHECK(cudaMalloc(&pool, size_t(pool_chunks * chunk_elems) * 2));
    BENCH_CHECK(cudaMemset(pool, 0x3c, size_t(pool_chunks * chunk_elems) * 2));  // bf16 ≈ 0.0115 everywhere
    // Dense at the default splitting (blocks per multiprocessor) and two finer ones, then the 2048-token
    // budget at the default.
    for (auto [tokens, blocks_per_sm] : {std::pair<int64_t, int>{context, kAttentionBlocksPerMultiprocessor}, {context, 16},
                                         {context, 64}, {int64_t(2048), kAttentionBlocksPerMultiprocessor}}) {
      const int64_t chunks = tokens / pt;
      std::vector<int32_t> indptr = {0}, indices, last(static_cast<size_t>(rows), int32_t(pt));
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<int32_t> own(size_t(context / pt));
        std::iota(own.begin(), own.end(), int32_t(r * (context / pt)));
        std::shuffle(own.begin(), own.end(), rng);  // a budget's pages are scattered over the pool
        indices.insert(indices.end(), own.begin(), own.begin() + chunks);
        indptr.push_back(int32_t(indices.size()));
      }
      std::vector<int32_t> seq(static_cast<size_t>(batch)), visible(static_cast<size_t>(batch), INT32_MAX);
      std::iota(seq.begin(), seq.end(), 0);
      int32_t *d_indptr, *d_indices, *d_last, *d_seq, *d_vis;
      float *d_q, *d_out;
      const AttentionSplits splits = attention_splits(batch * n_kv, chunks, sms, blocks_per_sm);
      void* ws = nullptr;
      BENCH_CHECK(cudaMalloc(&d_indptr, indptr.size() * 4));
      BENCH_CHECK(cudaMalloc(&d_indices, indices.size() * 4));
      BENCH_CHECK(cudaMalloc(&d_last, last.size() * 4));
      BENCH_CHECK(cudaMalloc(&d_seq, seq.size() * 4));
      BENCH_CHECK(cudaMalloc(&d_vis, visible.size() * 4));
      BENCH_CHECK(cudaMalloc(&d_q, size_t(batch * n_heads * hd) * 4));
      BENCH_CHECK(cudaMalloc(&d_out, size_t(batch * n_heads * hd) * 4));
      BENCH_CHECK(cudaMemset(d_q, 0, size_t(batch * n_heads * hd) * 4));
      BENCH_CHECK(cudaMalloc(&ws, attention_workspace_bytes(batch, n_heads, hd, splits.n_splits)));
      BENCH_CHECK(cudaMemcpy(d_indptr, indptr.data(), indptr.size() * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(d_indices, indices.data(), indices.size() * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(d_last, last.data(), last.size() * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(d_seq, seq.data(), seq.size() * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(d_vis, visible.data(), visible.size() * 4, cudaMemcpyHostToDevice));
      const PagedKvCuda kv{pool, d_indptr, d_indices, d_last, pt, hd, n_kv, DType::kBF16};
      const AttentionQueries q{d_q, d_seq, d_vis, batch, n_heads};
      const double ms = median_ms(quick ? 5 : 20, stream, [&] {
        BENCH_CHECK(attention_paged_cuda(q, kv, 0.088f, splits.n_splits, splits.chunks_per_split, ws, d_out, stream));
      });
      const double bytes = double(rows * tokens * 2 * hd * 2);
      const double gbps = bytes / ms / 1e6;
      char row[320];
      std::snprintf(row, sizeof row,
                    "%s{\"batch\": %lld, \"context\": %lld, \"tokens_attended\": %lld, \"blocks_per_sm\": %d, \"splits\": %lld, "
                    "\"us\": %.2f, \"kv_bytes\": %.0f, \"gb_per_s\": %.1f, \"fraction_of_hbm_read\": %.3f}",
                    out.size() > 1 ? ", " : "", (long long)batch, (long long)context, (long long)tokens,
                    blocks_per_sm, (long long)splits.n_splits, ms * 1e3, bytes, gbps, gbps / hbm_read_gbps);
      out += row;
      for (void* p : {(void*)d_indptr, (void*)d_indices, (void*)d_last, (void*)d_seq, (void*)d_vis, (void*)d_q,
                      (void*)d_out, ws}) {
        cudaFree(p);
      }
    }
    cudaFree(pool);
  }
  return out + "]";
}

// The 8B's down projection (k = 14336 → m = 4096) as decode GEMV (n = 1, 4, 8) and the gate
// projection (4096 → 14336) as a 512-token prefill GEMM.
std::string matmuls(cudaStream_t stream) {
  MatmulContext* ctx = nullptr;
  BENCH_CHECK(matmul_context_create(&ctx, stream));
  const int64_t k = 14336, m = 4096, n_max = 512;
  void* w = nullptr;
  float *x = nullptr, *y = nullptr;
  BENCH_CHECK(cudaMalloc(&w, size_t(k * m) * 2));
  BENCH_CHECK(cudaMalloc(&x, size_t(n_max * k) * 4));
  BENCH_CHECK(cudaMalloc(&y, size_t(n_max * k) * 4));
  BENCH_CHECK(cudaMemset(w, 0x3c, size_t(k * m) * 2));
  BENCH_CHECK(cudaMemset(x, 0, size_t(n_max * k) * 4));
  std::string out = "[";
  for (int64_t n : {1, 4, 8}) {
    const double ms = median_ms(quick ? 5 : 20, stream, [&] {
      BENCH_CHECK(matmul_cuda(ctx, x, w, DType::kBF16, nullptr, y, n, k, m));
    });
    char row[200];
    std::snprintf(row, sizeof row,
                  "%s{\"path\": \"gemv\", \"n\": %lld, \"k\": %lld, \"m\": %lld, \"us\": %.2f, \"weight_gb_per_s\": %.1f}",
                  out.size() > 1 ? ", " : "", (long long)n, (long long)k, (long long)m, ms * 1e3,
                  double(k * m * 2) / ms / 1e6);
    out += row;
  }
  const double ms = median_ms(quick ? 5 : 20, stream, [&] {
    BENCH_CHECK(matmul_cuda(ctx, x, w, DType::kBF16, nullptr, y, n_max, m, k));
  });
  char row[200];
  std::snprintf(row, sizeof row,
                ", {\"path\": \"cublas\", \"n\": %lld, \"k\": %lld, \"m\": %lld, \"us\": %.2f, \"tflop_per_s\": %.1f}",
                (long long)n_max, (long long)m, (long long)k, ms * 1e3, 2.0 * double(n_max * k * m) / ms / 1e9);
  out += row;
  cudaFree(w);
  cudaFree(x);
  cudaFree(y);
  matmul_context_destroy(ctx);
  return out + "]";
}

// One layer's selection for batch sequences × 8 KV heads at 32K (2048 pages of 16), budget 128 pages:
// scores (avgsm), top-k and membership, all on the device.
std::string retrieval_step(cudaStream_t stream) {
  const int64_t n_heads = 32, n_kv = 8, hd = 128, pages = 2048, k = 128, slots = 128;
  std::string out = "[";
  for (int64_t batch : {1, 4, 8}) {
    const int64_t rows = batch * n_kv;
    float *q, *digests, *ws, *scores;
    int64_t* offsets;
    int32_t *n_pages, *selected, *slot_pages, *moves, *n_moves;
    BENCH_CHECK(cudaMalloc(&q, size_t(batch * n_heads * hd) * 4));
    BENCH_CHECK(cudaMalloc(&digests, size_t(rows * pages * 2 * hd) * 4));
    BENCH_CHECK(cudaMalloc(&ws, size_t(rows * (n_heads / n_kv) * pages) * 4));
    BENCH_CHECK(cudaMalloc(&scores, size_t(rows * pages) * 4));
    BENCH_CHECK(cudaMalloc(&offsets, size_t(rows) * 8));
    BENCH_CHECK(cudaMalloc(&n_pages, size_t(rows) * 4));
    BENCH_CHECK(cudaMalloc(&selected, size_t(rows * k) * 4));
    BENCH_CHECK(cudaMalloc(&slot_pages, size_t(rows * slots) * 4));
    BENCH_CHECK(cudaMalloc(&moves, size_t(rows * k * 2) * 4));
    BENCH_CHECK(cudaMalloc(&n_moves, size_t(rows) * 4));
    BENCH_CHECK(cudaMemset(q, 0, size_t(batch * n_heads * hd) * 4));
    BENCH_CHECK(cudaMemset(digests, 0, size_t(rows * pages * 2 * hd) * 4));
    BENCH_CHECK(cudaMemset(slot_pages, 0xff, size_t(rows * slots) * 4));
    std::vector<int64_t> off(static_cast<size_t>(rows));
    std::vector<int32_t> np(static_cast<size_t>(rows), int32_t(pages));
    for (int64_t r = 0; r < rows; ++r) off[size_t(r)] = r * pages * 2 * hd;
    BENCH_CHECK(cudaMemcpy(offsets, off.data(), off.size() * 8, cudaMemcpyHostToDevice));
    BENCH_CHECK(cudaMemcpy(n_pages, np.data(), np.size() * 4, cudaMemcpyHostToDevice));
    TopKScratch* scratch = nullptr;
    BENCH_CHECK(top_k_scratch_create(&scratch, rows, pages));
    const int reps = quick ? 5 : 20;
    auto scores_step = [&] {
      BENCH_CHECK(page_scores_cuda(q, n_heads, n_kv, hd, digests, offsets, n_pages, rows, pages,
                                   GqaCombine::kAvgSoftmax, ws, scores, stream));
    };
    auto top_k_step = [&] { BENCH_CHECK(top_k_pages_cuda(scratch, scores, n_pages, rows, pages, k, selected, stream)); };
    auto plan_step = [&] {
      BENCH_CHECK(plan_slot_updates_cuda(slot_pages, slots, selected, k, rows, moves, n_moves, stream));
    };
    const double scores_ms = median_ms(reps, stream, scores_step);
    const double top_k_ms = median_ms(reps, stream, top_k_step);
    const double plan_ms = median_ms(reps, stream, plan_step);
    const double ms = median_ms(reps, stream, [&] {
      scores_step();
      top_k_step();
      plan_step();
    });
    char row[320];
    std::snprintf(row, sizeof row,
                  "%s{\"batch\": %lld, \"pages_per_head\": %lld, \"k\": %lld, \"us\": %.2f, \"scores_us\": %.2f, "
                  "\"top_k_us\": %.2f, \"plan_us\": %.2f}",
                  out.size() > 1 ? ", " : "", (long long)batch, (long long)pages, (long long)k, ms * 1e3,
                  scores_ms * 1e3, top_k_ms * 1e3, plan_ms * 1e3);
    out += row;
    top_k_scratch_destroy(scratch);
    for (void* p : {(void*)q, (void*)digests, (void*)ws, (void*)scores, (void*)offsets, (void*)n_pages,
                    (void*)selected, (void*)slot_pages, (void*)moves, (void*)n_moves}) {
      cudaFree(p);
    }
  }
  return out + "]";
}

// Recall of scattered 16 KiB chunks (one KV head's share of one page) from a registered host pool
// into contiguous device staging, by each way the kvstore could move them, against one contiguous
// copy of the same bytes (the large-block ceiling):
//   per_call_memcpy  one cudaMemcpyAsync per chunk;
//   batch_memcpy     one cudaMemcpyBatchAsync for all chunks;
//   zero_copy_kernel gather_chunks_cuda (the kvstore's push): a kernel reading the mapped pool over PCIe;
//   cpu_gather_h2d   one CPU thread gathers into pinned staging, then one copy (wall time of both).
std::string recall_methods(cudaStream_t stream, int sms) {
  const size_t chunk = 16384, pool_bytes = size_t(1) << 30, n = 4096, bytes = n * chunk;
  uint8_t* pool = static_cast<uint8_t*>(std::aligned_alloc(4096, pool_bytes));
  std::memset(pool, 7, pool_bytes);
  BENCH_CHECK(cudaHostRegister(pool, pool_bytes, cudaHostRegisterPortable | cudaHostRegisterMapped));
  uint8_t* pool_dev = nullptr;
  BENCH_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&pool_dev), pool, 0));
  void *staging_host = nullptr, *staging = nullptr;
  BENCH_CHECK(cudaHostAlloc(&staging_host, bytes, cudaHostAllocPortable));
  BENCH_CHECK(cudaMalloc(&staging, bytes));
  std::vector<int32_t> ids(pool_bytes / chunk);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  ids.resize(n);
  std::vector<const uint8_t*> mapped(n);
  for (size_t i = 0; i < n; ++i) mapped[i] = pool_dev + size_t(ids[i]) * chunk;
  const uint8_t** mapped_dev = nullptr;
  BENCH_CHECK(cudaMalloc(&mapped_dev, n * sizeof(uint8_t*)));
  BENCH_CHECK(cudaMemcpy(mapped_dev, mapped.data(), n * sizeof(uint8_t*), cudaMemcpyHostToDevice));
  std::vector<void*> dsts(n);
  std::vector<const void*> srcs(n);
  std::vector<size_t> sizes(n, chunk);
  for (size_t i = 0; i < n; ++i) {
    dsts[i] = static_cast<uint8_t*>(staging) + i * chunk;
    srcs[i] = pool + size_t(ids[i]) * chunk;
  }
  const int reps = quick ? 3 : 7;
  const double contiguous = median_ms(reps, stream, [&] {
    BENCH_CHECK(cudaMemcpyAsync(staging, pool, bytes, cudaMemcpyHostToDevice, stream));
  });
  const double per_call = median_ms(reps, stream, [&] {
    for (size_t i = 0; i < n; ++i) BENCH_CHECK(cudaMemcpyAsync(dsts[i], srcs[i], chunk, cudaMemcpyHostToDevice, stream));
  });
  cudaMemcpyAttributes attr{};
  attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  size_t attr_index = 0;
  const double batch = median_ms(reps, stream, [&] {
    BENCH_CHECK(cudaMemcpyBatchAsync(dsts.data(), const_cast<const void**>(srcs.data()), sizes.data(), n, &attr,
                                     &attr_index, 1, stream));
  });
  auto gather = [&] { BENCH_CHECK(gather_chunks_cuda(mapped_dev, int64_t(n), int64_t(chunk), staging, stream)); };
  const double kernel = median_ms(reps, stream, gather);
  // The same gather while a read-only kernel streams 4 GiB of HBM on another stream (a stand-in for
  // decode, which is bound by HBM reads too): the gather's rate, and the reader's slowdown.
  cudaStream_t other;
  BENCH_CHECK(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking));
  const HbmReader reader(sms);
  auto read_hbm = [&] { reader.launch(other); };
  const double read_alone = median_ms(reps, other, read_hbm);
  std::vector<double> both_gather, both_read;
  for (int r = 0; r < reps; ++r) {
    cudaEvent_t a, b, c;
    BENCH_CHECK(cudaEventCreate(&a));
    BENCH_CHECK(cudaEventCreate(&b));
    BENCH_CHECK(cudaEventCreate(&c));
    BENCH_CHECK(cudaDeviceSynchronize());
    BENCH_CHECK(cudaEventRecord(a, other));
    BENCH_CHECK(cudaStreamWaitEvent(stream, a, 0));
    read_hbm();
    gather();
    BENCH_CHECK(cudaEventRecord(b, stream));
    BENCH_CHECK(cudaEventRecord(c, other));
    BENCH_CHECK(cudaDeviceSynchronize());
    float g = 0, rd = 0;
    BENCH_CHECK(cudaEventElapsedTime(&g, a, b));
    BENCH_CHECK(cudaEventElapsedTime(&rd, a, c));
    both_gather.push_back(g);
    both_read.push_back(rd);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaEventDestroy(c);
  }
  std::sort(both_gather.begin(), both_gather.end());
  std::sort(both_read.begin(), both_read.end());
  const double gather_busy = both_gather[both_gather.size() / 2], read_busy = both_read[both_read.size() / 2];
  cudaStreamDestroy(other);
  // The CPU gather is timed on the host clock around both steps.
  std::vector<double> cpu_ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < n; ++i) std::memcpy(static_cast<uint8_t*>(staging_host) + i * chunk, srcs[i], chunk);
    BENCH_CHECK(cudaMemcpyAsync(staging, staging_host, bytes, cudaMemcpyHostToDevice, stream));
    BENCH_CHECK(cudaStreamSynchronize(stream));
    cpu_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(cpu_ms.begin(), cpu_ms.end());
  const double cpu = cpu_ms[cpu_ms.size() / 2];
  auto gbps = [&](double ms) { return double(bytes) / ms / 1e6; };
  char out[900];
  std::snprintf(out, sizeof out,
                "{\"chunk_bytes\": %zu, \"chunks\": %zu, \"contiguous_gb_per_s\": %.2f, \"per_call_memcpy_gb_per_s\": %.2f, "
                "\"batch_memcpy_gb_per_s\": %.2f, \"zero_copy_kernel_gb_per_s\": %.2f, \"cpu_gather_h2d_gb_per_s\": %.2f, "
                "\"zero_copy_fraction_of_contiguous\": %.3f, \"zero_copy_with_hbm_reader_gb_per_s\": %.2f, "
                "\"hbm_reader_alone_ms\": %.3f, \"hbm_reader_beside_gather_ms\": %.3f}",
                chunk, n, gbps(contiguous), gbps(per_call), gbps(batch), gbps(kernel), gbps(cpu),
                gbps(kernel) / gbps(contiguous), gbps(gather_busy), read_alone, read_busy);
  cudaFree(mapped_dev);
  cudaFree(staging);
  cudaFreeHost(staging_host);
  cudaHostUnregister(pool);
  std::free(pool);
  return out;
}

}  // namespace
}  // namespace freekv

int main(int argc, char** argv) {
  std::string commit = "unknown";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--commit") == 0 && i + 1 < argc) commit = argv[++i];
    else if (std::strcmp(argv[i], "--quick") == 0) freekv::quick = true;
    else {
      std::fprintf(stderr, "usage: gpu_bench [--commit SHA] [--quick]\n");
      return 2;
    }
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::fprintf(stderr, "gpu_bench: no CUDA device visible\n");
    return 77;
  }
  cudaDeviceProp prop;
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  double read_gbps = 0, copy_gbps = 0;
  freekv::memory_ceilings(stream, prop.multiProcessorCount, &read_gbps, &copy_gbps);
  const std::string h2d = freekv::h2d_table(stream);
  const std::string attention = freekv::decode_attention(stream, prop.multiProcessorCount, read_gbps);
  const std::string mm = freekv::matmuls(stream);
  const std::string retrieval = freekv::retrieval_step(stream);
  const std::string recall = freekv::recall_methods(stream, prop.multiProcessorCount);
  std::printf("{\"bench\": \"gpu\", \"device\": \"%s\", \"multiprocessors\": %d, \"memory_gib\": %.1f, \"commit\": \"%s\",\n"
              " \"hbm_read_gb_per_s\": %.1f, \"d2d_copy_gb_per_s\": %.1f,\n \"h2d_pinned\": %s,\n"
              " \"decode_attention\": %s,\n \"matmul\": %s,\n \"retrieval_step\": %s,\n \"recall_16k_chunks\": %s}\n",
              prop.name, prop.multiProcessorCount, double(prop.totalGlobalMem) / double(1 << 30), commit.c_str(),
              read_gbps, copy_gbps, h2d.c_str(), attention.c_str(), mm.c_str(), retrieval.c_str(), recall.c_str());
  return 0;
}
