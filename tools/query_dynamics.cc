#include "tools/query_dynamics.h"

#include <cmath>

namespace freekv {
namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t key_of(uint64_t seed, int64_t a, int64_t b, int64_t c, int64_t d) {
  uint64_t h = splitmix(seed);
  for (int64_t v : {a, b, c, d}) h = splitmix(h ^ uint64_t(v));
  return h;
}

// Unit-variance noise, cheap: uniform on [-√3, √3] from 16 bits.
float unit_noise(uint64_t bits) { return (float(bits & 0xFFFF) / 65535.f * 2.f - 1.f) * 1.7320508f; }

}  // namespace

QueryDynamics::QueryDynamics(const QueryDynamicsSpec& spec) : spec_(spec), rng_(spec.seed) {
  if (spec_.rho.empty()) spec_.rho = {0.9};
}

void QueryDynamics::next_query(int64_t seq, int64_t layer, float* q) {
  const int64_t d = spec_.head_dim, group = spec_.n_heads / spec_.n_kv_heads;
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  auto [it, fresh] = state_.try_emplace({seq, layer});
  std::vector<float>& x = it->second;
  if (fresh) {
    x.resize(size_t(spec_.n_heads * d));
    for (float& v : x) v = normal(rng_);
  } else {
    for (int64_t kv = 0; kv < spec_.n_kv_heads; ++kv) {
      const bool jump = uniform(rng_) < spec_.jump_probability;
      const float r = jump ? 0.f : float(rho(kv)), s = std::sqrt(1.f - r * r);
      for (int64_t i = kv * group * d; i < (kv + 1) * group * d; ++i) x[size_t(i)] = r * x[size_t(i)] + s * normal(rng_);
    }
  }
  std::copy(x.begin(), x.end(), q);
}

bool QueryDynamics::hot_page(int64_t seq, int64_t layer, int64_t kv_head, int64_t page) const {
  const uint64_t h = key_of(spec_.seed ^ 0x484F54ull, seq, layer, kv_head, page);
  return double(h >> 11) * (1.0 / 9007199254740992.0) < spec_.hot_page_fraction;
}

void QueryDynamics::key_value(int64_t seq, int64_t layer, int64_t kv_head, int64_t pos, int64_t page_tokens, float* k,
                              float* v) const {
  const int64_t d = spec_.head_dim, page = pos / page_tokens;
  for (int64_t i = 0; i < d; i += 2) {
    const uint64_t bits = key_of(spec_.seed, seq, layer, kv_head * 1000003 + pos, i);
    k[i] = unit_noise(bits);
    if (i + 1 < d) k[i + 1] = unit_noise(bits >> 16);
    v[i] = unit_noise(bits >> 32);
    if (i + 1 < d) v[i + 1] = unit_noise(bits >> 48);
  }
  if (!hot_page(seq, layer, kv_head, page)) return;
  // The page's direction: a unit vector from its own hash (Box-Muller normals, normalised).
  std::vector<float> u(static_cast<size_t>(d));
  double norm = 0;
  for (int64_t i = 0; i < d; ++i) {
    const uint64_t bits = key_of(spec_.seed ^ 0x444952ull, seq, layer, kv_head * 1000003 + page, i);
    const double a = (double(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    const double b = double(bits & 0x7FF) / 2048.0;
    u[size_t(i)] = float(std::sqrt(-2.0 * std::log(a)) * std::cos(6.283185307179586 * b));
    norm += double(u[size_t(i)]) * u[size_t(i)];
  }
  const float scale = float(spec_.hot_key_scale / std::sqrt(norm));
  for (int64_t i = 0; i < d; ++i) k[i] += scale * u[size_t(i)];
}

}  // namespace freekv
