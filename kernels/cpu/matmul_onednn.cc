// oneDNN's bf16 matmul for prefill (see matmul_onednn.h). Primitives are made once per (n, k, m) and
// kept: making one costs about a millisecond (its JIT), and a prefill reuses a handful of shapes.
#include "kernels/cpu/matmul_onednn.h"

#include <omp.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace freekv {
namespace {

using dnnl::memory;

struct Primitives {
  memory::desc src_f32, src_bf16, weights, dst;
  dnnl::reorder round_src;  // x fp32 → bf16
  dnnl::matmul product;
};

constexpr size_t kMaxCachedShapes = 256;  // a prefill's chunk sizes × a model's projections, with room

bool native_bf16() {
  static const bool has = __builtin_cpu_supports("avx512bf16") != 0;
  return has;
}

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// The shape's primitives, or null when oneDNN has none for it (its ISA limit). Thread-safe.
const Primitives* primitives_for(int64_t n, int64_t k, int64_t m) {
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t>, Primitives> cache;
  static bool unsupported = false;
  std::lock_guard lock(mu);
  if (unsupported) return nullptr;
  auto it = cache.find({n, k, m});
  if (it != cache.end()) return &it->second;
  if (cache.size() >= kMaxCachedShapes) cache.clear();
  using tag = memory::format_tag;
  using dt = memory::data_type;
  Primitives p;
  p.src_f32 = memory::desc({n, k}, dt::f32, tag::ab);
  p.src_bf16 = memory::desc({n, k}, dt::bf16, tag::ab);
  p.weights = memory::desc({k, m}, dt::bf16, tag::ba);  // our w[m][k] rows are the columns of [k, m]
  p.dst = memory::desc({n, m}, dt::f32, tag::ab);
  try {
    p.round_src = dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), p.src_f32, cpu_engine(), p.src_bf16));
    p.product = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p.src_bf16, p.weights, p.dst), cpu_engine()));
  } catch (const dnnl::error&) {
    unsupported = true;  // no bf16 matmul under this ISA: every shape would fail alike
    return nullptr;
  }
  return &cache.emplace(std::make_tuple(n, k, m), std::move(p)).first->second;
}

}  // namespace

bool matmul_bf16_onednn_runs() { return native_bf16() && primitives_for(16, 64, 64) != nullptr; }

bool matmul_bf16_onednn(const float* x, const uint16_t* w, float* y, int64_t n, int64_t k, int64_t m, int threads) {
  if (!native_bf16()) return false;
  const Primitives* p = primitives_for(n, k, m);
  if (p == nullptr) return false;
  thread_local std::vector<uint16_t> x_bf16;
  x_bf16.resize(size_t(n * k));
  omp_set_num_threads(threads);  // oneDNN runs on this thread's OpenMP team
  thread_local dnnl::stream s(cpu_engine());
  memory src(p->src_f32, cpu_engine(), const_cast<float*>(x));
  memory src_bf16(p->src_bf16, cpu_engine(), x_bf16.data());
  memory weights(p->weights, cpu_engine(), const_cast<uint16_t*>(w));
  memory dst(p->dst, cpu_engine(), y);
  p->round_src.execute(s, src, src_bf16);
  p->product.execute(s, {{DNNL_ARG_SRC, src_bf16}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
  s.wait();
  return true;
}

}  // namespace freekv
