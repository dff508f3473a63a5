// oneDNN's bf16 matmul for prefill (see matmul_onednn.h). Primitives are made once per shape and kept:
// making one costs about a millisecond (its JIT), and a prefill reuses a handful of shapes.
#include "kernels/cpu/matmul_onednn.h"

#include <omp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace freekv {
namespace {

using dnnl::memory;

struct Primitives {
  memory::desc src, weights, dst, scratchpad;
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

// The shape's primitive, or null when oneDNN has none for it (its ISA limit). Thread-safe; a caller
// keeps its primitive alive while the cache forgets old shapes.
std::shared_ptr<const Primitives> primitives_for(int64_t n, int64_t k, int64_t m, int64_t ldy) {
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, std::shared_ptr<const Primitives>> cache;
  static bool unsupported = false;
  std::lock_guard lock(mu);
  if (unsupported) return nullptr;
  auto it = cache.find({n, k, m, ldy});
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxCachedShapes) cache.clear();
  using tag = memory::format_tag;
  using dt = memory::data_type;
  auto p = std::make_shared<Primitives>();
  p->src = memory::desc({n, k}, dt::bf16, tag::ab);
  p->weights = memory::desc({k, m}, dt::bf16, tag::ba);  // our w[m][k] rows are the columns of [k, m]
  p->dst = memory::desc({n, m}, dt::f32, memory::dims{ldy, 1});
  try {
    // The caller's scratchpad, not the library's: oneDNN would allocate one per call (weights repacked
    // per block, megabytes), and fresh pages are slow on a VM that shadows page tables: a 512-row
    // product ran at half rate for its first few calls of every new shape.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p->src, p->weights, p->dst), attr, cpu_engine());
    p->scratchpad = pd.scratchpad_desc();
    p->product = dnnl::matmul(pd);
  } catch (const dnnl::error&) {
    unsupported = true;  // no bf16 matmul under this ISA: every shape would fail alike
    return nullptr;
  }
  cache.emplace(std::make_tuple(n, k, m, ldy), p);
  return p;
}

}  // namespace

bool matmul_bf16_onednn_runs() { return native_bf16() && primitives_for(16, 64, 64, 64) != nullptr; }

bool matmul_bf16_onednn(const uint16_t* x, const uint16_t* w, float* y, int64_t n, int64_t k, int64_t m, int64_t ldy) {
  if (!native_bf16()) return false;
  const std::shared_ptr<const Primitives> p = primitives_for(n, k, m, ldy);
  if (p == nullptr) return false;
  // On this thread alone: no OpenMP team, whose threads would spin on the cores our pool needs next.
  omp_set_num_threads(1);
  thread_local dnnl::stream s(cpu_engine());
  thread_local std::vector<uint8_t> scratch;  // grows to the largest shape's need, then stays
  scratch.resize(std::max(scratch.size(), p->scratchpad.get_size()));
  memory src(p->src, cpu_engine(), const_cast<uint16_t*>(x));
  memory weights(p->weights, cpu_engine(), const_cast<uint16_t*>(w));
  memory dst(p->dst, cpu_engine(), y);
  memory scratchpad(p->scratchpad, cpu_engine(), scratch.data());
  p->product.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst},
                         {DNNL_ARG_SCRATCHPAD, scratchpad}});
  s.wait();
  return true;
}

}  // namespace freekv
