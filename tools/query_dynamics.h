// Synthetic query dynamics for retrieval (the harness of the policy model test and of `freekv bench
// --query-cosine`): queries per (sequence, layer, query head) whose adjacent-step cosine is controlled,
// and keys that make some pages clearly relevant, so that every path of a policy runs as it would under
// a trained model's stable queries — the speculative path of freekv above all, which a random model's
// uncorrelated queries never take.
//
// Queries: per (sequence, layer, query head) an AR(1) process q' = ρ·q + √(1−ρ²)·n with n ~ N(0, I),
// whose adjacent-step cosine is ρ on average (± about √((1−ρ²)/head_dim)); ρ is set per KV head (all
// its query heads share it), and with probability `jump_probability` per step a KV head's queries
// start afresh (cosine ≈ 0), as real heads do now and then.
// Keys: a fraction of the pages of each (sequence, layer, KV head) is "hot": every key of the page
// carries hot_key_scale · u along one unit direction u of its own, plus unit noise; the other pages are
// noise. A query then scores the hot pages it points at far above the rest, and which those are drifts
// as the query moves. Values are unit noise. Keys and values depend only on (seed, sequence, layer,
// head, position), so they can be regenerated instead of stored.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <tuple>
#include <vector>

namespace freekv {

struct QueryDynamicsSpec {
  int64_t n_layers = 1, n_heads = 1, n_kv_heads = 1, head_dim = 64;
  std::vector<double> rho = {0.9};  // adjacent-step cosine per KV head, repeated over the heads
  double jump_probability = 0.0;
  double hot_page_fraction = 0.125;
  double hot_key_scale = 4.0;
  uint64_t seed = 1;
};

class QueryDynamics {
 public:
  explicit QueryDynamics(const QueryDynamicsSpec& spec);

  double rho(int64_t kv_head) const { return spec_.rho[size_t(kv_head) % spec_.rho.size()]; }

  // The next query of sequence `seq` at `layer`: q[n_heads, head_dim]. The first call for a (seq,
  // layer) draws it afresh; each later one moves it by one step of the process.
  void next_query(int64_t seq, int64_t layer, float* q);
  // K and V rows of token `pos` of (seq, layer, kv_head): k[head_dim], v[head_dim].
  void key_value(int64_t seq, int64_t layer, int64_t kv_head, int64_t pos, int64_t page_tokens, float* k,
                 float* v) const;
  // Whether that token's page is hot.
  bool hot_page(int64_t seq, int64_t layer, int64_t kv_head, int64_t page) const;

 private:
  QueryDynamicsSpec spec_;
  std::mt19937_64 rng_;
  std::map<std::pair<int64_t, int64_t>, std::vector<float>> state_;  // (seq, layer) -> [n_heads, head_dim]
};

}  // namespace freekv
