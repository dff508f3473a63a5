// Every retrieval policy against a separately written model of its rule (DESIGN §6), step by step.
//
// The harness (tools/query_dynamics.h) drives three ragged sequences together, layer by layer as a
// batched forward step does, over a real freekv-kvstore whose recalls share three staging pairs: queries
// whose adjacent-step cosine differs per KV head (0.995, 0.95, 0.85, 0.5, with jumps), so that in most
// steps some heads are corrected and some not; keys with hot pages; contexts that grow one token at a
// time through every regime (no candidate, fewer candidates than selected pages, the full budget, far
// beyond), prefill chunks that stream released pages back, and a session resumed half-way.
//
// At every (sequence, layer, step) the model, which shares no code with worker/retrieval, says what the
// policy must attend — sinks, window, top-k by the digest bound over the candidates (recomputed here from
// the keys), the previous step's selection for freekv heads whose query stayed, re-selection of exactly
// the corrected ones — and which pages it may recall: only those not held, into slots whose page is not
// wanted. The real plan must agree, the pages the offloading policies release must be gone from the
// worker, and the attention output must equal dense attention over the model's set, computed here in
// double precision from the keys and values as written.
//
// Selections are compared with a tolerance band: where two candidates' scores (or a head's query
// cosine and τ) differ by less than float rounding, either choice is accepted and the model then
// follows the real one. Seeds change from run to run (FREEKV_TEST_SEED fixes them); a failure prints
// the seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <set>

#include "tools/kvstore_process.h"
#include "tools/query_dynamics.h"
#include "worker/engine/sequence.h"
#include "worker/retrieval/policy.h"

namespace freekv {
namespace {

constexpr int64_t kLayers = 2, kHeads = 8, kKvHeads = 4, kGroup = kHeads / kKvHeads, kHd = 64, kPt = 8;
constexpr int64_t kSink = 16, kRecent = 32, kBudget = 80;  // 2 sink pages, 4 window pages, 4 selected
constexpr int64_t kSelected = (kBudget - kSink - kRecent) / kPt;
constexpr int64_t kChunk = 16;                              // prefill chunk
constexpr double kTau = 0.9;

// ---- the model ----

struct ModelSpan {
  int64_t pages, sinks, window_first;
  int64_t candidates() const { return window_first - sinks; }
};

ModelSpan model_span(PolicyKind policy, int64_t tokens) {
  const int64_t window = policy == PolicyKind::kStreaming ? kBudget - kSink : kRecent;
  ModelSpan s;
  s.pages = (tokens + kPt - 1) / kPt;
  s.sinks = std::min(s.pages, kSink / kPt);
  s.window_first = std::max(s.sinks, s.pages - window / kPt);
  return s;
}

// The keys and values of one sequence as stored (rounded to bf16): [layer][head][pos][hd].
struct Truth {
  std::vector<std::vector<std::vector<float>>> k, v;
  Truth() : k(kLayers, std::vector<std::vector<float>>(kKvHeads)), v(k) {}
  const float* key(int64_t l, int64_t h, int64_t pos) const { return k[size_t(l)][size_t(h)].data() + pos * kHd; }
  const float* value(int64_t l, int64_t h, int64_t pos) const { return v[size_t(l)][size_t(h)].data() + pos * kHd; }
};

float bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

// Group score of each candidate page under the paper's avgsm: per query head the Quest bound
// Σ max(q·max, q·min) over the page's keys, scaled as attention logits, softmaxed over the candidates,
// then averaged over the group.
std::vector<double> model_scores(const Truth& t, int64_t layer, int64_t head, const float* q_heads, int64_t first,
                                 int64_t end) {
  const int64_t n = end - first;
  std::vector<double> out(size_t(std::max<int64_t>(n, 0)), 0.0);
  for (int64_t g = 0; g < kGroup; ++g) {
    const float* q = q_heads + (head * kGroup + g) * kHd;
    std::vector<double> s(out.size());
    for (int64_t j = 0; j < n; ++j) {
      double bound = 0;
      for (int64_t i = 0; i < kHd; ++i) {
        double mx = -1e30, mn = 1e30;
        for (int64_t tok = 0; tok < kPt; ++tok) {
          const double kv = t.key(layer, head, (first + j) * kPt + tok)[i];
          mx = std::max(mx, kv);
          mn = std::min(mn, kv);
        }
        bound += std::max(q[i] * mx, q[i] * mn);
      }
      s[size_t(j)] = bound / std::sqrt(double(kHd));
    }
    const double top = *std::max_element(s.begin(), s.end());
    double sum = 0;
    for (double& x : s) sum += (x = std::exp(x - top));
    for (int64_t j = 0; j < n; ++j) out[size_t(j)] += s[size_t(j)] / sum / kGroup;
  }
  return out;
}

// Whether `selected` is a top-k of the scored candidates [first, first + scores.size()), allowing
// either side of a boundary closer than float rounding.
::testing::AssertionResult is_top_k(const std::vector<double>& scores, int64_t first, const std::set<int32_t>& selected) {
  const int64_t n = int64_t(scores.size()), want = std::min(kSelected, n);
  if (int64_t(selected.size()) != want) {
    return ::testing::AssertionFailure() << selected.size() << " pages selected, expected " << want;
  }
  double lowest_in = 1e30, highest_out = -1e30, top = 0;
  for (int64_t j = 0; j < n; ++j) {
    top = std::max(top, std::fabs(scores[size_t(j)]));
    if (selected.count(int32_t(first + j))) lowest_in = std::min(lowest_in, scores[size_t(j)]);
    else highest_out = std::max(highest_out, scores[size_t(j)]);
  }
  for (int32_t p : selected) {
    if (p < first || p >= first + n) return ::testing::AssertionFailure() << "page " << p << " is not a candidate";
  }
  if (lowest_in < highest_out - 1e-4 * top) {
    return ::testing::AssertionFailure() << "a page scoring " << highest_out << " was left out for one scoring " << lowest_in;
  }
  return ::testing::AssertionSuccess();
}

std::set<int32_t> as_set(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }

// Mean over a KV head's query heads of the cosine between this step's and the previous step's query.
double group_cosine(const float* q, const float* prev, int64_t head) {
  double total = 0;
  for (int64_t g = 0; g < kGroup; ++g) {
    const float* a = q + (head * kGroup + g) * kHd;
    const float* b = prev + (head * kGroup + g) * kHd;
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < kHd; ++i) {
      ab += double(a[i]) * b[i];
      aa += double(a[i]) * a[i];
      bb += double(b[i]) * b[i];
    }
    total += ab / std::sqrt(aa * bb) / kGroup;
  }
  return total;
}

// Dense attention of q[n_q, kHeads, kHd] (positions past..past+n_q-1) over the pages each KV head
// attends, in double precision from the truth.
std::vector<float> model_attention(const Truth& t, int64_t layer, const float* q, int64_t n_q, int64_t past,
                                   int64_t tokens, const std::vector<std::set<int32_t>>& pages) {
  std::vector<float> out(size_t(n_q * kHeads * kHd));
  for (int64_t i = 0; i < n_q; ++i) {
    for (int64_t hq = 0; hq < kHeads; ++hq) {
      const int64_t h = hq / kGroup;
      const float* qv = q + (i * kHeads + hq) * kHd;
      std::vector<int64_t> pos;
      for (int32_t p : pages[size_t(h)])
        for (int64_t tok = p * kPt; tok < std::min(tokens, (p + 1) * kPt); ++tok)
          if (tok <= past + i) pos.push_back(tok);
      std::vector<double> w(pos.size());
      double top = -1e300, sum = 0;
      for (size_t j = 0; j < pos.size(); ++j) {
        double s = 0;
        for (int64_t c = 0; c < kHd; ++c) s += double(qv[c]) * t.key(layer, h, pos[j])[c];
        w[j] = s / std::sqrt(double(kHd));
        top = std::max(top, w[j]);
      }
      for (double& x : w) sum += (x = std::exp(x - top));
      for (int64_t c = 0; c < kHd; ++c) {
        double acc = 0;
        for (size_t j = 0; j < pos.size(); ++j) acc += w[j] * t.value(layer, h, pos[j])[c];
        out[size_t((i * kHeads + hq) * kHd + c)] = float(acc / sum);
      }
    }
  }
  return out;
}

// What the model remembers of one (sequence, layer).
struct ModelLayer {
  std::vector<std::vector<int32_t>> slots = std::vector<std::vector<int32_t>>(kKvHeads, std::vector<int32_t>(kSelected, -1));
  bool speculating = false;                 // freekv: next holds the previous step's selection
  std::vector<float> prev_q;                // freekv: the previous step's query
  std::vector<std::set<int32_t>> next;      // freekv: pages the slots hold for this step's uncorrected heads
};

// ---- the run ----

struct RunSpec {
  PolicyKind policy;
  uint64_t seed;
  std::vector<int> dense_layers;
};

class PolicyModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto p = KvstoreProcess::start("256MiB", "12KiB");
    ASSERT_TRUE(p.ok()) << p.status();
    kvstore_ = p->release();
    const char* fixed = std::getenv("FREEKV_TEST_SEED");
    base_seed_ = fixed != nullptr ? std::strtoull(fixed, nullptr, 10) : std::random_device{}();
    std::printf("policy model test: base seed %llu (FREEKV_TEST_SEED=%llu repeats this run)\n",
                (unsigned long long)base_seed_, (unsigned long long)base_seed_);
  }
  static void TearDownTestSuite() {
    delete kvstore_;
    kvstore_ = nullptr;
  }

  void run(const RunSpec& spec);

  static KvstoreProcess* kvstore_;
  static uint64_t base_seed_;
};
KvstoreProcess* PolicyModelTest::kvstore_ = nullptr;
uint64_t PolicyModelTest::base_seed_ = 0;

// Tallies of what a run went through, so the test can say it covered what it claims.
struct Coverage {
  int64_t checks = 0, budget_steps = 0, dense_steps = 0, few_candidates = 0, full_budget = 0;
  int64_t mixed_correction_steps = 0, corrected_heads = 0, speculative_heads = 0, streamed_pieces = 0;  // pages
  int64_t recalled_now = 0, recalled_next = 0;
};

void PolicyModelTest::run(const RunSpec& spec) {
  SCOPED_TRACE(::testing::Message() << policy_name(spec.policy) << " seed " << spec.seed);
  const bool offloading = spec.policy == PolicyKind::kArkvale || spec.policy == PolicyKind::kFreekv ||
                          spec.policy == PolicyKind::kStreaming;
  KvGeometry g{kLayers, kKvHeads, kHd, kPt, DType::kBF16};
  KvBlockPool pool(g, 64ull << 20);
  ThreadPool threads(2);
  KvstoreClient::Options co;
  co.worker_name = "policy-model-test";
  co.staging_pairs = 3;  // fewer than the 6 (sequence, layer) recalls in flight: the queue must share
  auto client = KvstoreClient::connect(kvstore_->socket_path(), co);
  ASSERT_TRUE(client.ok()) << client.status();
  RecallQueue recalls(client->get());
  RetrievalConfig rc;
  rc.policy = spec.policy;
  rc.budget = kBudget;
  rc.sink = kSink;
  rc.recent = kRecent;
  rc.correction_threshold = kTau;
  rc.dense_layers = spec.dense_layers;

  QueryDynamicsSpec ds;
  ds.n_layers = kLayers;
  ds.n_heads = kHeads;
  ds.n_kv_heads = kKvHeads;
  ds.head_dim = kHd;
  ds.rho = {0.995, 0.95, 0.85, 0.5};
  ds.jump_probability = 0.03;
  ds.hot_page_fraction = 0.2;
  ds.seed = spec.seed;
  QueryDynamics dyn(ds);
  std::mt19937 rng(uint32_t(spec.seed));
  std::normal_distribution<float> normal(0.f, 1.f);

  const int64_t prompts[] = {5, 37, 70}, rounds = 300, resume_at = 153, resumed = 1;  // resumed with 3 tokens to replay
  const int kSeqs = 3;
  std::vector<std::unique_ptr<Sequence>> seqs(kSeqs);
  std::vector<std::string> ids(kSeqs);
  std::vector<SessionRef> refs(kSeqs);
  std::vector<Truth> truth(kSeqs);
  std::vector<int64_t> fed(kSeqs, 0), pending_replay(kSeqs, 0);
  std::vector<std::vector<ModelLayer>> model(kSeqs, std::vector<ModelLayer>(kLayers));
  for (int s = 0; s < kSeqs; ++s) {
    ids[size_t(s)] = absl::StrCat("model-", policy_name(spec.policy), "-", spec.seed, "-", s);
    auto info = (*client)->open_session(ids[size_t(s)], session_geometry(g), true);
    ASSERT_TRUE(info.ok()) << info.status();
    refs[size_t(s)] = info->ref;
    seqs[size_t(s)] = std::make_unique<Sequence>(&pool, KvStoreBinding{&recalls, info->ref}, rc, kHeads, &threads);
  }
  Coverage cov;
  const float scale = 1.f / std::sqrt(float(kHd));
  for (int64_t round = 0; round < rounds; ++round) {
    if (round == resume_at) {
      // The sequence goes away (drained) and a new one resumes its session from the kvstore: committed
      // pages stay there, digests come from their key statistics, the partial page is replayed.
      Sequence& old = *seqs[resumed];
      ASSERT_TRUE(old.drain().ok());
      const int64_t tokens = old.n_tokens();
      seqs[resumed] = std::make_unique<Sequence>(&pool, KvStoreBinding{&recalls, refs[resumed]}, rc, kHeads, &threads);
      const int64_t pages = tokens / kPt;
      RetrievalStats attach_stats;
      ASSERT_TRUE(seqs[resumed]->kv().attach(pages, tokens, &attach_stats).ok());
      pending_replay[resumed] = tokens - pages * kPt;
      model[resumed] = std::vector<ModelLayer>(kLayers);
    }
    // This round's input per sequence: the rest of its prompt in chunks, a replay, or one decode token.
    std::vector<int64_t> n_new(kSeqs);
    for (int s = 0; s < kSeqs; ++s) {
      const int64_t left = prompts[s] - fed[size_t(s)];
      n_new[size_t(s)] = pending_replay[size_t(s)] > 0 ? pending_replay[size_t(s)] : left > 0 ? std::min(kChunk, left) : 1;
      ASSERT_TRUE(seqs[size_t(s)]->kv().reserve(n_new[size_t(s)]).ok());
    }
    for (int64_t l = 0; l < kLayers; ++l) {
      for (int s = 0; s < kSeqs; ++s) {
        Sequence& seq = *seqs[size_t(s)];
        TieredKv& kv = seq.kv();
        Truth& t = truth[size_t(s)];
        const int64_t past = kv.n_tokens(), n_q = n_new[size_t(s)], tokens = past + n_q;
        const bool replay = pending_replay[size_t(s)] > 0;
        // K/V of the new tokens (a replay writes the same values again).
        std::vector<float> k(kHd), v(kHd);
        for (int64_t h = 0; h < kKvHeads; ++h) {
          auto& tk = t.k[size_t(l)][size_t(h)];
          auto& tv = t.v[size_t(l)][size_t(h)];
          tk.resize(size_t(tokens * kHd));
          tv.resize(size_t(tokens * kHd));
          for (int64_t pos = past; pos < tokens; ++pos) {
            dyn.key_value(s, l, h, pos, kPt, k.data(), v.data());
            for (int64_t i = 0; i < kHd; ++i) {
              tk[size_t(pos * kHd + i)] = bf16(k[size_t(i)]);
              tv[size_t(pos * kHd + i)] = bf16(v[size_t(i)]);
            }
            for (int64_t i = 0; i < kHd; ++i) {
              store_from_f32(kv.k_row(l, h, pos), DType::kBF16, size_t(i), k[size_t(i)]);
              store_from_f32(kv.v_row(l, h, pos), DType::kBF16, size_t(i), v[size_t(i)]);
            }
          }
        }
        std::vector<float> q(size_t(n_q * kHeads * kHd));
        if (n_q == 1 && !replay) {
          dyn.next_query(s, l, q.data());
        } else {
          for (float& x : q) x = normal(rng);
        }
        ModelLayer& m = model[size_t(s)][size_t(l)];
        // The model's view of the slots must be the real one before the step.
        if (kv.selected_slots() > 0) {
          for (int64_t h = 0; h < kKvHeads; ++h) ASSERT_EQ(kv.slot_pages(l, h), m.slots[size_t(h)]) << "round " << round;
        }
        std::vector<float> out(q.size());
        int64_t released_candidates = 0;  // a dense step must stream these back from the kvstore
        {
          const ModelSpan before = model_span(spec.policy, past + n_q);
          for (int64_t p = before.sinks; p < before.window_first; ++p) released_candidates += !kv.resident(l, p);
        }
        auto plan = seq.attend(l, q.data(), n_q, scale, out.data(), threads);
        ASSERT_TRUE(plan.ok()) << plan.status() << " round " << round << " sequence " << s << " layer " << l;
        SCOPED_TRACE(::testing::Message() << "round " << round << " sequence " << s << " layer " << l << " tokens " << tokens);
        ++cov.checks;

        // ---- what must be attended ----
        const ModelSpan sp = model_span(spec.policy, tokens);
        const bool dense_layer = std::count(spec.dense_layers.begin(), spec.dense_layers.end(), int(l)) > 0;
        const bool budget = spec.policy != PolicyKind::kFull && n_q == 1 && sp.candidates() > 0 && !dense_layer;
        ASSERT_EQ(plan->dense, !budget);
        ASSERT_EQ(plan->sink_pages, sp.sinks);
        ASSERT_EQ(plan->window_first, sp.window_first);
        std::vector<std::set<int32_t>> attended(kKvHeads);
        if (!budget) {
          ++cov.dense_steps;
          for (auto& a : attended)
            for (int64_t p = 0; p < sp.pages; ++p) a.insert(int32_t(p));
          if (spec.policy == PolicyKind::kFreekv) m.speculating = false;
          for (const HeadPlan& hp : plan->heads) ASSERT_TRUE(hp.fetch_now.empty() && hp.fetch_next.empty());
          cov.streamed_pieces += released_candidates;
        } else {
          ++cov.budget_steps;
          (sp.candidates() < kSelected ? cov.few_candidates : cov.full_budget) += 1;
          ASSERT_EQ(int64_t(plan->heads.size()), kKvHeads);
          const ModelSpan next_sp = model_span(spec.policy, tokens + 1);
          int64_t corrected_here = 0, definite = 0, band = 0;
          for (int64_t h = 0; h < kKvHeads; ++h) {
            const HeadPlan& hp = plan->heads[size_t(h)];
            const std::set<int32_t> middle = as_set(hp.middle);
            ASSERT_EQ(middle.size(), hp.middle.size()) << "head " << h << " attends a page twice";
            if (spec.policy == PolicyKind::kStreaming) {
              ASSERT_TRUE(middle.empty());
            } else {
              const auto now_scores = model_scores(t, l, h, q.data(), sp.sinks, sp.window_first);
              bool select_now = true;  // quest, arkvale, and freekv's first step or a corrected head
              if (spec.policy == PolicyKind::kFreekv && m.speculating) {
                const double cos = group_cosine(q.data(), m.prev_q.data(), h);
                const bool in_band = std::fabs(cos - kTau) < 1e-4;
                band += in_band;
                select_now = in_band ? !hp.fetch_now.empty() || middle != m.next[size_t(h)] : cos < kTau;
                definite += !in_band && cos < kTau;
                if (!select_now) {
                  // Speculative: what the previous step's query selected, already in the slots.
                  ASSERT_EQ(middle, m.next[size_t(h)]) << "head " << h << " (cosine " << cos << ") left its speculative pages";
                  ASSERT_TRUE(hp.fetch_now.empty()) << "head " << h << " recalled now although its query stayed";
                  ++cov.speculative_heads;
                } else {
                  ++corrected_here;
                }
              }
              if (select_now) {
                ASSERT_TRUE(is_top_k(now_scores, sp.sinks, middle)) << "head " << h;
              }
            }
            // Only missing pages are recalled, into slots whose page is not wanted (membership).
            if (spec.policy == PolicyKind::kArkvale || spec.policy == PolicyKind::kFreekv) {
              std::vector<int32_t>& slots = m.slots[size_t(h)];
              auto apply = [&](const std::vector<SlotMove>& moves, const std::set<int32_t>& wanted, const char* what) {
                std::set<int32_t> used;
                for (const SlotMove& mv : moves) {
                  ASSERT_TRUE(used.insert(mv.slot).second) << what << ": slot " << mv.slot << " filled twice";
                  ASSERT_EQ(std::count(slots.begin(), slots.end(), mv.page), 0) << what << ": page " << mv.page << " is held already";
                  ASSERT_TRUE(wanted.count(mv.page)) << what << ": page " << mv.page << " is not selected";
                  ASSERT_TRUE(slots[size_t(mv.slot)] < 0 || !wanted.count(slots[size_t(mv.slot)]))
                      << what << ": evicts page " << slots[size_t(mv.slot)] << ", which is selected";
                }
                for (const SlotMove& mv : moves) slots[size_t(mv.slot)] = mv.page;
                for (int32_t p : wanted) ASSERT_EQ(std::count(slots.begin(), slots.end(), p), 1) << what << ": page " << p << " not held";
              };
              apply(hp.fetch_now, middle, "fetch now");
              cov.recalled_now += int64_t(hp.fetch_now.size());
              if (spec.policy == PolicyKind::kFreekv) {
                // Next step's selection with this query over the next span: all of it held once the
                // background fills land (with fewer candidates than slots, all candidates).
                std::set<int32_t> after(slots.begin(), slots.end());
                for (const SlotMove& mv : hp.fetch_next) after.insert(mv.page);
                std::set<int32_t> next;
                if (next_sp.candidates() >= kSelected) {
                  for (const SlotMove& mv : hp.fetch_next) next.insert(mv.page);
                  for (int32_t p : slots) {
                    const bool evicted = std::any_of(hp.fetch_next.begin(), hp.fetch_next.end(),
                                                     [&](const SlotMove& mv) { return slots[size_t(mv.slot)] == p; });
                    if (p >= 0 && !evicted) next.insert(p);
                  }
                } else {
                  for (int64_t p = next_sp.sinks; p < next_sp.window_first; ++p) next.insert(int32_t(p));
                }
                ASSERT_TRUE(is_top_k(model_scores(t, l, h, q.data(), next_sp.sinks, next_sp.window_first), next_sp.sinks, next))
                    << "head " << h << ": next step's pages";
                apply(hp.fetch_next, next, "fetch next");
                cov.recalled_next += int64_t(hp.fetch_next.size());
                if (m.next.size() != size_t(kKvHeads)) m.next.resize(size_t(kKvHeads));
                m.next[size_t(h)] = next;
              }
            }
            for (int64_t p = 0; p < sp.sinks; ++p) attended[size_t(h)].insert(int32_t(p));
            for (int64_t p = sp.window_first; p < sp.pages; ++p) attended[size_t(h)].insert(int32_t(p));
            attended[size_t(h)].insert(middle.begin(), middle.end());
          }
          if (spec.policy == PolicyKind::kFreekv) {
            if (m.speculating) {
              ASSERT_EQ(plan->correction_checks, kKvHeads);
              ASSERT_GE(plan->correction_triggers, definite);
              ASSERT_LE(plan->correction_triggers, definite + band);
              cov.corrected_heads += corrected_here;
              if (corrected_here > 0 && corrected_here < kKvHeads) ++cov.mixed_correction_steps;
            } else {
              ASSERT_EQ(plan->correction_checks, 0);
            }
            m.speculating = true;
            m.prev_q.assign(q.begin(), q.begin() + kHeads * kHd);
          }
        }
        // Offloading policies keep no released candidate in the worker; quest and full keep all.
        for (int64_t p = sp.sinks; p < sp.window_first; ++p) {
          const bool must_go = offloading && kv.offloaded(p);
          if (spec.policy == PolicyKind::kQuest || spec.policy == PolicyKind::kFull || must_go) {
            ASSERT_EQ(kv.resident(l, p), !must_go) << "page " << p;
          }
        }
        // The attention output is dense attention over the model's set.
        const std::vector<float> want = model_attention(t, l, q.data(), n_q, past, tokens, attended);
        double err = 0, top = 1e-30;
        for (size_t i = 0; i < out.size(); ++i) {
          err = std::max(err, double(std::fabs(out[i] - want[i])));
          top = std::max(top, double(std::fabs(want[i])));
        }
        ASSERT_LT(err / top, 1e-4) << "attention output differs from the model's (max abs err " << err << ")";
        if (kv.selected_slots() > 0) {
          for (int64_t h = 0; h < kKvHeads; ++h) ASSERT_EQ(kv.slot_pages(l, h), m.slots[size_t(h)]) << "after the step";
        }
      }
    }
    for (int s = 0; s < kSeqs; ++s) {
      std::vector<int32_t> tok(size_t(n_new[size_t(s)]), 7);
      if (pending_replay[size_t(s)] > 0) {
        pending_replay[size_t(s)] = 0;
      } else if (fed[size_t(s)] < prompts[s]) {
        fed[size_t(s)] += n_new[size_t(s)];
      }
      ASSERT_TRUE(seqs[size_t(s)]->kv().commit(tok.data(), n_new[size_t(s)]).ok());
    }
  }
  for (auto& seq : seqs) ASSERT_TRUE(seq->drain().ok());
  seqs.clear();
  for (const std::string& id : ids) ASSERT_TRUE((*client)->close_session(id).ok());
  std::printf("%-9s seed %llu: %lld checks (%lld dense, %lld budget: %lld with fewer candidates than slots), "
              "%lld released pages brought back for dense steps, %lld corrected / %lld speculative heads, %lld steps with mixed corrections, "
              "%lld + %lld chunks recalled now / next\n",
              policy_name(spec.policy), (unsigned long long)spec.seed, (long long)cov.checks, (long long)cov.dense_steps,
              (long long)cov.budget_steps, (long long)cov.few_candidates, (long long)cov.streamed_pieces,
              (long long)cov.corrected_heads, (long long)cov.speculative_heads, (long long)cov.mixed_correction_steps,
              (long long)cov.recalled_now, (long long)cov.recalled_next);
  // The run went where it claims to.
  EXPECT_GT(cov.dense_steps, 0);
  if (spec.policy != PolicyKind::kFull) {
    EXPECT_GT(cov.few_candidates, 0);
    EXPECT_GT(cov.full_budget, 100);
  }
  if (offloading) {
    EXPECT_GT(cov.streamed_pieces, 0) << "no prefill chunk streamed a released page back";
  }
  if (spec.policy == PolicyKind::kFreekv) {
    EXPECT_GT(cov.mixed_correction_steps, 50);
    EXPECT_GT(cov.speculative_heads, 200);
    EXPECT_GT(cov.recalled_next, 0);
  }
}

TEST_F(PolicyModelTest, Full) { for (uint64_t i = 0; i < 2; ++i) run({PolicyKind::kFull, base_seed_ + i, {}}); }
TEST_F(PolicyModelTest, Streaming) { for (uint64_t i = 0; i < 2; ++i) run({PolicyKind::kStreaming, base_seed_ + i, {}}); }
TEST_F(PolicyModelTest, Quest) { for (uint64_t i = 0; i < 2; ++i) run({PolicyKind::kQuest, base_seed_ + i, {}}); }
TEST_F(PolicyModelTest, Arkvale) { for (uint64_t i = 0; i < 2; ++i) run({PolicyKind::kArkvale, base_seed_ + i, {}}); }
TEST_F(PolicyModelTest, Freekv) { for (uint64_t i = 0; i < 3; ++i) run({PolicyKind::kFreekv, base_seed_ + i, {}}); }
TEST_F(PolicyModelTest, FreekvWithADenseLayer) { run({PolicyKind::kFreekv, base_seed_ + 7, {1}}); }

}  // namespace
}  // namespace freekv
