// The CPU's matrix-product ceiling at a model's prefill shapes (run by bench/run_gemm_bench.sh, never by
// ctest): for one prefill chunk of n tokens, every projection of a Llama layer (qkv, o, gate and up,
// down) and the LM head, through every path this build has, in one run:
//   engine_matmul   kernels/ops.h matmul_shared_input as prefill runs it (q, k and v as three products
//                   of one input, gate and up as two; the other paths multiply each group as one
//                   matrix of the summed rows), in the process's arithmetic
//                   ("matmul_arithmetic" in the JSON; FREEKV_MATMUL=fp32 holds fp32): bf16 is oneDNN's
//                   bf16 matmul on the stored weights; fp32 widens bf16 weights per block of rows for
//                   OpenBLAS sgemm, single-threaded per block, on our thread pool;
//   openblas_f32    OpenBLAS sgemm on weights already in fp32 (widened once, outside the timing),
//                   OpenBLAS's own threads: the fp32 ceiling, at twice the weights' memory;
//   onednn_bf16     oneDNN's bf16 matmul on the stored bf16 weights, activations rounded to bf16,
//                   fp32 accumulation and output ("plain": weights used as stored; "packed":
//                   reordered once into oneDNN's preferred layout, outside the timing).
// Prints JSON: GFLOP/s per shape and path, and per path the prefill tokens/s the layer's projections
// alone would allow (attention, norms and the LM head excluded: it is a ceiling).
// Usage: gemm_bench [--hidden 2048] [--intermediate 8192] [--heads 32] [--kv-heads 8] [--head-dim 64]
//                   [--vocab 128256] [--chunk 512] [--threads N]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "kernels/ops.h"
#include "tools/run_info.h"

extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace freekv {
namespace {

struct Shape {
  std::string name;
  int64_t k;
  std::vector<int64_t> parts;  // the engine's products sharing x: y_i[n, m_i] = x[n, k] · w_i[m_i, k]ᵀ
  bool per_layer;
  int64_t m() const {  // the libraries' paths multiply the parts as one [Σ m_i, k] matrix
    int64_t total = 0;
    for (int64_t p : parts) total += p;
    return total;
  }
};

double median_ms(int reps, const std::function<void()>& f) {
  // Warm-up for half a second: page faults, oneDNN's JIT, BLAS buffers, and on the VMs of
  // bench/README.md freshly written memory, which runs at half rate for its first passes (up to ten
  // calls of a 512-row product).
  const auto warm_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  do f();
  while (std::chrono::steady_clock::now() < warm_until);
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// oneDNN's bf16 matmul for one shape: src [n, k] bf16, weights [k, m] (our [m, k] rows, "ba"), dst
// [n, m] f32. Returns the time of one product, or −1 where this CPU has no bf16 matmul in oneDNN.
double onednn_ms(int64_t n, int64_t k, int64_t m, const std::vector<uint16_t>& w_bf16, bool packed, int reps,
                 int threads) {
  // On its own OpenMP team, as the library runs by default (the engine's path, timed before, leaves this
  // thread at one OpenMP thread: it runs oneDNN per pool thread).
  omp_set_num_threads(threads);
  using namespace dnnl;
  using tag = memory::format_tag;
  using dt = memory::data_type;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const memory::desc src_md({n, k}, dt::bf16, tag::ab), dst_md({n, m}, dt::f32, tag::ab);
  const memory::desc w_plain({k, m}, dt::bf16, tag::ba);
  const memory::desc w_want = packed ? memory::desc({k, m}, dt::bf16, tag::any) : w_plain;
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, w_want, dst_md), eng);
  } catch (const dnnl::error&) {
    return -1;
  }
  std::vector<uint16_t> src(size_t(n * k), f32_to_bf16(0.5f));
  std::vector<float> dst(size_t(n * m));
  memory src_mem(src_md, eng, src.data()), dst_mem(dst_md, eng, dst.data());
  memory w_mem(w_plain, eng, const_cast<uint16_t*>(w_bf16.data()));
  memory w_used = w_mem;
  if (pd.weights_desc() != w_plain) {
    w_used = memory(pd.weights_desc(), eng);
    reorder(w_mem, w_used).execute(s, w_mem, w_used);
    s.wait();
  }
  dnnl::matmul prim(pd);
  return median_ms(reps, [&] {
    prim.execute(s, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w_used}, {DNNL_ARG_DST, dst_mem}});
    s.wait();
  });
}

int run(int argc, char** argv) {
  std::map<std::string, int64_t> a = {{"--hidden", 2048}, {"--intermediate", 8192}, {"--heads", 32},
                                      {"--kv-heads", 8},  {"--head-dim", 64},        {"--vocab", 128256},
                                      {"--chunk", 512},   {"--threads", int64_t(std::thread::hardware_concurrency())},
                                      {"--layers", 16},   {"--reps", 5}};
  for (int i = 1; i < argc; ++i) {
    if (a.count(argv[i]) == 0 || i + 1 >= argc) {
      std::fprintf(stderr, "gemm_bench: unknown or incomplete argument %s\n", argv[i]);
      return 2;
    }
    a[argv[i]] = std::stoll(argv[i + 1]);
    ++i;
  }
  const int64_t h = a["--hidden"], n = a["--chunk"], hd = a["--head-dim"], reps = a["--reps"];
  const int threads = int(a["--threads"]);
  // oneDNN runs on OpenMP threads, which read OMP_NUM_THREADS when they first start.
  setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), /*overwrite=*/1);
  const int64_t inter = a["--intermediate"];
  const std::vector<Shape> shapes = {
      {"qkv", h, {a["--heads"] * hd, a["--kv-heads"] * hd, a["--kv-heads"] * hd}, true},
      {"o", a["--heads"] * hd, {h}, true},
      {"gate_up", h, {inter, inter}, true},
      {"down", inter, {h}, true},
      {"lm_head", h, {a["--vocab"]}, false},
  };
  ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::vector<float> x(size_t(n * std::max(h, a["--intermediate"])));
  for (auto& v : x) v = nd(rng);
  std::string rows;
  std::map<std::string, double> layer_ms;  // path → ms of one layer's projections
  for (const Shape& sh : shapes) {
    const int64_t m = sh.m();
    std::vector<uint16_t> w(size_t(sh.k * m));
    for (auto& v : w) v = f32_to_bf16(nd(rng));
    std::vector<float> y(size_t(n * m));
    std::vector<MatmulOutput> parts;  // the parts' weights one after another in w, their outputs in y
    int64_t first = 0;                // the part's first row of w
    for (int64_t p : sh.parts) {
      parts.push_back({w.data() + first * sh.k, DType::kBF16, nullptr, y.data() + first * n, p});
      first += p;
    }
    std::map<std::string, double> ms;
    ms["engine_matmul"] = median_ms(int(reps), [&] { matmul_shared_input(x.data(), n, sh.k, parts, pool); });
    {
      std::vector<float> wf(w.size());
      for (size_t i = 0; i < w.size(); ++i) wf[i] = bf16_to_f32(w[i]);
      if (openblas_set_num_threads != nullptr) openblas_set_num_threads(threads);
      ms["openblas_f32"] = median_ms(int(reps), [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(m), int(sh.k), 1.f, x.data(), int(sh.k),
                    wf.data(), int(sh.k), 0.f, y.data(), int(m));
      });
      if (openblas_set_num_threads != nullptr) openblas_set_num_threads(1);  // as the engine runs it
    }
    for (bool packed : {false, true}) {
      const double t = onednn_ms(n, sh.k, m, w, packed, int(reps), threads);
      if (t >= 0) ms[packed ? "onednn_bf16_packed" : "onednn_bf16_plain"] = t;
    }
    const double gflop = 2.0 * double(n) * double(sh.k) * double(m) / 1e9;
    for (const auto& [path, t] : ms) {
      char row[256];
      std::snprintf(row, sizeof row, "%s{\"shape\": \"%s\", \"n\": %lld, \"k\": %lld, \"m\": %lld, \"path\": \"%s\", "
                    "\"ms\": %.3f, \"gflop_per_s\": %.1f}",
                    rows.empty() ? "" : ",\n  ", sh.name.c_str(), (long long)n, (long long)sh.k, (long long)m,
                    path.c_str(), t, gflop / (t / 1e3));
      rows += row;
      if (sh.per_layer) layer_ms[path] += t;
    }
  }
  std::string implied;
  for (const auto& [path, t] : layer_ms) {
    char row[160];
    std::snprintf(row, sizeof row, "%s\"%s\": %.1f", implied.empty() ? "" : ", ", path.c_str(),
                  double(n) / (double(a["--layers"]) * t / 1e3));
    implied += row;
  }
  std::printf("{\"bench\": \"gemm\", \"machine\": \"%s\", \"commit\": \"%s\", \"threads\": %d, \"chunk\": %lld, "
              "\"layers\": %lld, \"matmul_arithmetic\": \"%s\",\n \"rows\": [\n  %s],\n"
              " \"prefill_tokens_per_s_projections_only\": {%s}}\n",
              machine_description().c_str(), git_commit().c_str(), threads, (long long)n, (long long)a["--layers"],
              matmul_arithmetic_name(matmul_arithmetic()), rows.c_str(), implied.c_str());
  return 0;
}

}  // namespace
}  // namespace freekv

int main(int argc, char** argv) { return freekv::run(argc, argv); }
