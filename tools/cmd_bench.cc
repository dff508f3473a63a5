// `freekv bench`: prefill and decode speed of the CPU engine at several context lengths and batch
// sizes, set against the memory bandwidth of a plain copy loop measured in the same run.
//
// Every listed policy runs over the same inputs in one process, their decode steps interleaved, so
// the ratios between them are measured in the same minutes of a shared machine.
//
// What is timed: a decode step is one forward step of `batch` sequences by one token each, with the
// KV of `context` earlier tokens per sequence; bytes read per step are the weights (the embedding
// table counts only when it is also the output head) plus every K/V byte attention reads. Prefill is
// one chunk of --prefill-tokens per sequence processed at that context offset. The KV of the earlier
// tokens is synthesized (random values written into the pages) rather than prefilled: a 32K prefill
// of a 1B model would take the CPU hours, and the values in the pages do not change the work done.
//
// With --query-cosine the retrieval inputs come from the query-dynamics harness (tools/query_dynamics.h)
// instead: the synthesized keys make some pages clearly relevant, and every decode step's queries
// (after RoPE, before attention) are replaced by the harness's, whose adjacent-step cosine per KV head
// is the given value (spread ±0.03 over the heads, 1% jumps). Then freekv takes its speculative path as
// under a trained model; with a random model's own queries every correction fires.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <tuple>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"
#include "nlohmann/json.hpp"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/query_dynamics.h"
#include "tools/run_info.h"

namespace freekv {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Best-of-N bandwidth of memcpy over `bytes` split across the pool's threads, counting the bytes
// read plus the bytes written (the traffic a copy puts on the memory bus).
double copy_bandwidth(ThreadPool& pool, size_t bytes, int repeats) {
  std::unique_ptr<uint8_t[]> src(new uint8_t[bytes]), dst(new uint8_t[bytes]);
  std::memset(src.get(), 1, bytes);
  std::memset(dst.get(), 2, bytes);
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    pool.parallel_for(int64_t(bytes), [&](int64_t b, int64_t e, int) {
      std::memcpy(dst.get() + b, src.get() + b, size_t(e - b));
    }, 1 << 20);
    best = std::min(best, since(t0));
  }
  return 2.0 * double(bytes) / best;
}

// Best-of-N bandwidth of summing `bytes` split across the pool's threads: what a pure read stream
// (like a decode step's weight reads) can reach on this machine.
double read_bandwidth(ThreadPool& pool, size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  double best = 1e30;
  std::vector<uint64_t> sums(static_cast<size_t>(pool.size()));
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    pool.parallel_for(int64_t(n), [&](int64_t b, int64_t e, int t) {
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      int64_t i = b;
      for (; i + 4 <= e; i += 4) {
        a0 += buf[size_t(i)];
        a1 += buf[size_t(i + 1)];
        a2 += buf[size_t(i + 2)];
        a3 += buf[size_t(i + 3)];
      }
      for (; i < e; ++i) a0 += buf[size_t(i)];
      sums[size_t(t)] = a0 + a1 + a2 + a3;  // kept so the loop is not optimised away
    }, 1 << 17);
    best = std::min(best, since(t0));
  }
  return double(n * sizeof(uint64_t)) / best;
}

// Gives sequence `index` `n` tokens of K/V in every layer and head (offloaded and digested like any
// other page): the harness's when `dyn` is set, else random values.
absl::Status synthesize_kv(Sequence& seq, int64_t index, int64_t n, int32_t vocab, std::mt19937& rng,
                           const QueryDynamics* dyn) {
  TieredKv& kv = seq.kv();
  FREEKV_RETURN_IF_ERROR(kv.reserve(n));
  const KvGeometry& g = kv.geometry();
  std::vector<float> row(static_cast<size_t>(g.head_dim)), vrow(row.size());
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& x : row) x = normal(rng);
  const CpuPrimitives& prim = cpu_primitives();
  for (int64_t l = 0; l < g.n_layers; ++l) {
    for (int64_t h = 0; h < g.n_kv_heads; ++h) {
      for (int64_t t = 0; t < n; ++t) {
        const int64_t pos = kv.n_tokens() + t;
        if (dyn != nullptr) {
          dyn->key_value(index, l, h, pos, g.page_tokens, row.data(), vrow.data());
        } else {
          row[size_t(t % g.head_dim)] = normal(rng);  // vary the rows without paying for a full draw each
          vrow = row;
        }
        prim.from_f32(row.data(), g.dtype, kv.k_row(l, h, pos), g.head_dim);
        prim.from_f32(vrow.data(), g.dtype, kv.v_row(l, h, pos), g.head_dim);
      }
    }
  }
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint32_t(vocab));
  return kv.commit(ids.data(), n);
}

struct CaseResult {
  int64_t context = 0, batch = 0;
  double prefill_seconds = 0, prefill_tokens_per_second = 0;
  StepProfile prefill_phases;  // of the timed prefill chunk
  std::vector<double> decode_step_seconds;
  StepProfile decode_phases;   // summed over the timed decode steps
  double decode_tokens_per_second = 0, bytes_per_step = 0, bandwidth_fraction = 0, read_bandwidth_fraction = 0;
  RetrievalStats retrieval;  // over the timed decode steps, all sequences
  int64_t kv_bytes = 0;  // worker KV memory one sequence holds after the timed steps (the most of any)
};

// One policy's share of a case: its sequences, their inputs and what was measured.
struct PolicyCase {
  Engine* engine = nullptr;
  std::mt19937 rng{1234};                // the same inputs for every policy
  std::unique_ptr<QueryDynamics> dyn;    // ... and the same query draws
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<RetrievalStats> before;    // at the first timed step
  CaseResult r;
};

std::string session_of(const Engine& e, int64_t context, int64_t batch, int64_t b) {
  return absl::StrCat("bench-", policy_name(e.options().retrieval.policy), "-", context, "-", batch, "-", b);
}

// KV of the earlier context for every sequence, then one timed prefill chunk each.
absl::Status start_case(PolicyCase& pc, int64_t context, int64_t batch, int64_t prefill_tokens,
                        const QueryDynamicsSpec* dynamics) {
  Engine& engine = *pc.engine;
  const ModelConfig& c = engine.weights().config;
  if (dynamics != nullptr) pc.dyn = std::make_unique<QueryDynamics>(*dynamics);
  for (int64_t b = 0; b < batch; ++b) {
    FREEKV_ASSIGN_OR_RETURN(auto seq, engine.new_sequence(session_of(engine, context, batch, b)));
    pc.seqs.push_back(std::move(seq));
    FREEKV_RETURN_IF_ERROR(synthesize_kv(*pc.seqs.back(), b, context - prefill_tokens, c.vocab, pc.rng, pc.dyn.get()));
  }
  if (pc.dyn != nullptr) {
    engine.forward().set_query_hook([&pc](const Sequence* seq, int64_t layer, float* q) {
      for (size_t b = 0; b < pc.seqs.size(); ++b)
        if (pc.seqs[b].get() == seq) pc.dyn->next_query(int64_t(b), layer, q);
    });
  }
  std::uniform_int_distribution<int32_t> tok(0, c.vocab - 1);
  std::vector<std::vector<int32_t>> prompt(size_t(batch), std::vector<int32_t>(static_cast<size_t>(prefill_tokens)));
  for (auto& p : prompt) for (auto& t : p) t = tok(pc.rng);
  pc.r.context = context;
  pc.r.batch = batch;
  std::vector<StepInput> in;
  for (int64_t b = 0; b < batch; ++b) in.push_back({pc.seqs[size_t(b)].get(), prompt[size_t(b)].data(), prefill_tokens, false});
  std::vector<float> logits;
  engine.forward().set_profile(&pc.r.prefill_phases);
  auto t0 = Clock::now();
  const absl::Status prefilled = engine.forward().step_all(in, &logits);
  pc.r.prefill_seconds = since(t0);
  engine.forward().set_profile(nullptr);
  FREEKV_RETURN_IF_ERROR(prefilled);
  pc.r.prefill_tokens_per_second = double(batch * prefill_tokens) / pc.r.prefill_seconds;
  return absl::OkStatus();
}

// One decode step of every sequence; step 0 (untimed) warms caches and makes the first, synchronous
// selection.
absl::Status decode_step(PolicyCase& pc, int64_t step) {
  const int64_t batch = int64_t(pc.seqs.size());
  if (step == 1) {
    pc.before.clear();
    for (const auto& seq : pc.seqs) pc.before.push_back(seq->total_stats());
  }
  std::uniform_int_distribution<int32_t> tok(0, pc.engine->weights().config.vocab - 1);
  std::vector<int32_t> next(static_cast<size_t>(batch));
  std::vector<StepInput> in;
  for (int64_t b = 0; b < batch; ++b) {
    next[size_t(b)] = tok(pc.rng);
    in.push_back({pc.seqs[size_t(b)].get(), &next[size_t(b)], 1, false});
  }
  std::vector<float> logits;
  pc.engine->forward().set_profile(step > 0 ? &pc.r.decode_phases : nullptr);
  auto t0 = Clock::now();
  const absl::Status stepped = pc.engine->forward().step_all(in, &logits);
  if (step > 0) pc.r.decode_step_seconds.push_back(since(t0));
  pc.engine->forward().set_profile(nullptr);
  return stepped;
}

// Totals, the median step, the bytes a step reads; then the sequences and their sessions go.
absl::Status finish_case(PolicyCase& pc, double copy_bw, double read_bw) {
  Engine& engine = *pc.engine;
  CaseResult& r = pc.r;
  engine.forward().set_query_hook(nullptr);
  for (size_t b = 0; b < pc.seqs.size(); ++b) {
    r.retrieval += pc.seqs[b]->total_stats() - pc.before[b];
    // Not the peak: synthesizing the context writes it all locally before the kvstore takes it.
    r.kv_bytes = std::max(r.kv_bytes, pc.seqs[b]->kv().blocks_held() * int64_t(pc.seqs[b]->kv().geometry().block_bytes()));
  }
  for (auto& seq : pc.seqs) FREEKV_RETURN_IF_ERROR(seq->drain());
  pc.seqs.clear();
  for (int64_t b = 0; b < r.batch; ++b) {
    FREEKV_RETURN_IF_ERROR(engine.close_sequence_session(session_of(engine, r.context, r.batch, b)));
  }
  std::vector<double> sorted = r.decode_step_seconds;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  r.decode_tokens_per_second = double(r.batch) / median;
  const KvGeometry& g = engine.kv_pool().geometry();
  // K/V bytes attention reads: the whole context under full, the budget under the other policies.
  const RetrievalConfig& rc = engine.options().retrieval;
  const int64_t attended = rc.policy == PolicyKind::kFull ? r.context : std::min(r.context, rc.budget);
  const double kv_bytes = double(r.batch) * double(attended) * double(g.n_layers * g.n_kv_heads * g.head_dim * 2) *
                          double(dtype_size(g.dtype));
  r.bytes_per_step = double(engine.weights().weight_bytes) + kv_bytes;
  r.bandwidth_fraction = r.bytes_per_step / median / copy_bw;
  r.read_bandwidth_fraction = r.bytes_per_step / median / read_bw;
  return absl::OkStatus();
}

// Every policy over the same case at each of the batch sizes given, their decode steps interleaved
// (policy A step 1, policy B step 1, ..., then the next batch size's), so that the machine's drift
// between minutes weighs on all of them alike. Results batch by batch, policies in engine order.
absl::StatusOr<std::vector<CaseResult>> run_case(const std::vector<Engine*>& engines, int64_t context,
                                                 const std::vector<int64_t>& batches, int64_t prefill_tokens,
                                                 int64_t decode_steps, double copy_bw, double read_bw,
                                                 const QueryDynamicsSpec* dynamics) {
  std::vector<std::unique_ptr<PolicyCase>> cases;
  for (int64_t batch : batches) {
    for (Engine* e : engines) {
      cases.push_back(std::make_unique<PolicyCase>());
      cases.back()->engine = e;
      FREEKV_RETURN_IF_ERROR(start_case(*cases.back(), context, batch, prefill_tokens, dynamics));
    }
  }
  for (int64_t s = 0; s <= decode_steps; ++s)
    for (auto& pc : cases) FREEKV_RETURN_IF_ERROR(decode_step(*pc, s));
  std::vector<CaseResult> out;
  for (auto& pc : cases) {
    FREEKV_RETURN_IF_ERROR(finish_case(*pc, copy_bw, read_bw));
    out.push_back(pc->r);
  }
  return out;
}

}  // namespace

nlohmann::json case_json(const std::string& policy, const CaseResult& r, int64_t decode_steps) {
  const RetrievalStats& st = r.retrieval;
  const double steps = double(std::max<int64_t>(1, decode_steps));
  return {{"policy", policy}, {"context", r.context}, {"batch", r.batch}, {"prefill_seconds", r.prefill_seconds},
          {"prefill_tokens_per_second", r.prefill_tokens_per_second},
          {"prefill_phase_seconds",
           {{"projections", r.prefill_phases.projections}, {"attention", r.prefill_phases.attention},
            {"norms_rope_elementwise", r.prefill_phases.norms_rope_elementwise}, {"logits", r.prefill_phases.logits}}},
          {"decode_step_seconds", r.decode_step_seconds},
          {"decode_phase_seconds_per_step",
           {{"projections", r.decode_phases.projections / steps}, {"attention", r.decode_phases.attention / steps},
            {"norms_rope_elementwise", r.decode_phases.norms_rope_elementwise / steps},
            {"logits", r.decode_phases.logits / steps}}},
          {"decode_tokens_per_second", r.decode_tokens_per_second}, {"bytes_per_step", r.bytes_per_step},
          {"bandwidth_fraction", r.bandwidth_fraction}, {"read_bandwidth_fraction", r.read_bandwidth_fraction},
          {"recall_bytes_per_step", double(st.bytes_recalled) / steps},
          {"recall_pages_per_step", double(st.pages_recalled) / steps},
          {"recall_wait_seconds_per_step", st.recall_wait_seconds / steps},
          {"sync_recalls", st.sync_recalls}, {"async_recalls", st.async_recalls},
          {"kv_bytes_per_sequence", r.kv_bytes},
          {"correction_checks", st.correction_checks}, {"correction_triggers", st.correction_triggers},
          {"correction_rate", st.correction_checks > 0 ? double(st.correction_triggers) / double(st.correction_checks) : 0.0}};
}

int cmd_bench(int argc, char** argv) {
  std::string model, contexts = "1024,8192,32768", batches = "1,4", policies = "full", out;
  int64_t prefill_tokens = 512, decode_steps = 8;
  double query_cosine = 0, query_jump = 0.01, hot_pages = 0.125;
  bool interleave_batches = false;
  EngineFlags engine_flags;
  engine_flags.kv_memory = "12GiB";
  engine_flags.kvstore_pool = "6GiB";
  ArgParser p("freekv bench --model DIR [--contexts 1024,8192,32768] [--batches 1,4] [--policies full,freekv] [--out FILE.json]",
              "Measures prefill and decode tokens/s, the fraction of copy-loop memory bandwidth a decode step achieves,\n"
              "and per retrieval policy the recall bytes, correction rate and recall wait of a step. bench/run_cpu_bench.sh\n"
              "and bench/run_policy_bench.sh make the Llama-3.2-1B-shaped model and record results.");
  p.add_string("model", &model, "Hugging Face model directory", true);
  p.add_string("contexts", &contexts, "comma-separated context lengths (tokens before the timed step)");
  p.add_string("batches", &batches, "comma-separated batch sizes");
  p.add_string("policies", &policies, "comma-separated retrieval policies to compare in this run");
  p.add_int("prefill-tokens", &prefill_tokens, "prompt tokens per sequence in the timed prefill chunk");
  p.add_int("decode-steps", &decode_steps, "timed decode steps per case (median reported)");
  p.add_double("query-cosine", &query_cosine,
               "drive retrieval with synthetic queries of this adjacent-step cosine (±0.03 over the KV heads) and "
               "keys with hot pages, instead of the model's queries and random keys (0 = off)");
  p.add_double("query-jump", &query_jump, "with --query-cosine: chance per step that a KV head's queries start afresh");
  p.add_double("hot-pages", &hot_pages, "with --query-cosine: fraction of pages whose keys share a strong direction");
  p.add_bool("interleave-batches", &interleave_batches,
             "hold every batch size's sequences at once and interleave their decode steps, so that ratios between "
             "batch sizes see the same minutes of the machine (needs the KV of all of them)");
  p.add_string("out", &out, "also write the JSON here");
  engine_flags.add_to(p);
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;
  auto options = engine_flags.to_options();
  if (!options.ok()) return report_error("bench", options.status());
  if (absl::Status s = engine_flags.require_cpu("bench"); !s.ok()) return report_error("bench", s);
  options->prefill_chunk = prefill_tokens;

  std::vector<int64_t> ctx_list, batch_list;
  for (auto part : absl::StrSplit(contexts, ',')) ctx_list.push_back(std::stoll(std::string(part)));
  for (auto part : absl::StrSplit(batches, ',')) batch_list.push_back(std::stoll(std::string(part)));
  for (int64_t ctx : ctx_list) {
    if (ctx <= prefill_tokens) return report_error("bench", absl::InvalidArgumentError("each context must exceed --prefill-tokens"));
  }
  auto policy_list = parse_policy_list(policies);
  if (!policy_list.ok()) return report_error("bench", policy_list.status());
  auto kvstore = engine_flags.start_kvstore_for(*policy_list, &*options, model);
  if (!kvstore.ok()) return report_error("bench", kvstore.status());

  nlohmann::json j;
  j["machine"] = machine_description();
  j["commit"] = git_commit();
  j["simd"] = cpu_primitives().name;
  j["matmul_arithmetic"] = matmul_arithmetic_name(matmul_arithmetic());
  j["model"] = model;
  j["method"] = absl::StrCat("decode: median of timed steps after one untimed step, the policies' steps interleaved",
                             interleave_batches ? " and the batch sizes' too" : "",
                             "; bytes_per_step = weights + K/V attended; "
                             "KV of earlier tokens synthesized (offloaded and digested like generated pages)");
  std::unique_ptr<QueryDynamicsSpec> dynamics;
  if (query_cosine != 0) {
    if (!(query_cosine > 0 && query_cosine < 1)) {
      return report_error("bench", absl::InvalidArgumentError("--query-cosine must be in (0, 1)"));
    }
    dynamics = std::make_unique<QueryDynamicsSpec>();
    dynamics->rho.clear();
    for (double off : {-0.03, -0.01, 0.01, 0.03}) dynamics->rho.push_back(std::clamp(query_cosine + off, 0.0, 0.999));
    dynamics->jump_probability = query_jump;
    dynamics->hot_page_fraction = hot_pages;
    j["queries"] = {{"source", "harness"}, {"adjacent_cosine", query_cosine}, {"per_kv_head_rho", dynamics->rho},
                    {"jump_probability", query_jump}, {"hot_page_fraction", hot_pages}};
  } else {
    j["queries"] = {{"source", "model"}};
  }
  j["retrieval"] = {{"budget", options->retrieval.budget}, {"sink", options->retrieval.sink},
                    {"recent", options->retrieval.recent}, {"correction_threshold", options->retrieval.correction_threshold},
                    {"page_tokens", options->page_tokens}};
  double copy_bw = 0, read_bw = 0;
  std::map<std::tuple<std::string, int64_t, int64_t>, CaseResult> results;
  std::vector<std::unique_ptr<Engine>> engines;
  std::vector<Engine*> engine_ptrs;
  for (PolicyKind policy : *policy_list) {
    auto engine = Engine::load(model, engine_flags.for_policy(*options, policy));
    if (!engine.ok()) return report_error("bench", engine.status());
    Engine& e = **engine;
    {
      // Untimed: fault the weights in from the page cache so the first case does not pay for it.
      auto warm = e.new_sequence("bench-warm-up");
      if (!warm.ok()) return report_error("bench", warm.status());
      std::vector<int32_t> ids(64, 1);
      std::vector<float> logits;
      if (absl::Status st = e.forward().step_all({{warm->get(), ids.data(), 64, false}}, &logits); !st.ok()) {
        return report_error("bench", st);
      }
      warm->reset();
      if (absl::Status st = e.close_sequence_session("bench-warm-up"); !st.ok()) return report_error("bench", st);
    }
    engine_ptrs.push_back(&e);
    engines.push_back(std::move(*engine));
  }
  Engine& first = *engine_ptrs[0];
  copy_bw = copy_bandwidth(first.threads(), size_t(1) << 29, 5);
  read_bw = read_bandwidth(first.threads(), size_t(1) << 29, 5);
  std::fprintf(stderr, "copy-loop bandwidth: %.2f GB/s (read + write bytes); read-only loop: %.2f GB/s\n", copy_bw / 1e9,
               read_bw / 1e9);
  j["read_bandwidth_bytes_per_second"] = read_bw;
  j["threads"] = first.threads().size();
  j["weight_bytes_per_step"] = first.weights().weight_bytes;
  j["copy_bandwidth_bytes_per_second"] = copy_bw;
  if (dynamics != nullptr) {
    const ModelConfig& mc = first.weights().config;
    dynamics->n_layers = mc.n_layers;
    dynamics->n_heads = mc.n_heads;
    dynamics->n_kv_heads = mc.n_kv_heads;
    dynamics->head_dim = mc.head_dim;
  }
  // The runs: each batch size at each context, or with --interleave-batches every batch size of a
  // context in one run (all their sequences held at once).
  std::vector<std::pair<int64_t, std::vector<int64_t>>> runs;  // context, batch sizes
  if (interleave_batches) {
    for (int64_t ctx : ctx_list) runs.push_back({ctx, batch_list});
  } else {
    for (int64_t batch : batch_list)
      for (int64_t ctx : ctx_list) runs.push_back({ctx, {batch}});
  }
  for (const auto& [ctx, run_batches] : runs) {
    auto rs = run_case(engine_ptrs, ctx, run_batches, prefill_tokens, decode_steps, copy_bw, read_bw, dynamics.get());
    if (!rs.ok()) return report_error("bench", rs.status());
    for (size_t i = 0; i < rs->size(); ++i) {
      const CaseResult& r = (*rs)[i];
      const int64_t batch = r.batch;
      const std::string name = policy_name((*policy_list)[i % policy_list->size()]);
      const RetrievalStats& st = r.retrieval;
      std::fprintf(stderr, "%-9s context %6lld batch %lld: prefill %8.1f tok/s, decode %7.2f tok/s (%.1f ms/step), "
                   "%.1f%% of copy bandwidth (%.1f%% of read-only), recall %.2f MB/step, corrections %lld/%lld\n",
                   name.c_str(), (long long)ctx, (long long)batch, r.prefill_tokens_per_second, r.decode_tokens_per_second,
                   1e3 * double(batch) / r.decode_tokens_per_second, 100 * r.bandwidth_fraction,
                   100 * r.read_bandwidth_fraction, double(st.bytes_recalled) / 1e6 / double(decode_steps),
                   (long long)st.correction_triggers, (long long)st.correction_checks);
      j["cases"].push_back(case_json(name, r, decode_steps));
      results[{name, ctx, batch}] = r;
    }
  }
  // Ratios measured in this run.
  auto tps = [&](const std::string& pol, int64_t ctx, int64_t b) -> double {
    auto it = results.find({pol, ctx, b});
    return it == results.end() ? 0.0 : it->second.decode_tokens_per_second;
  };
  for (int64_t ctx : ctx_list) {
    for (int64_t b : batch_list) {
      const std::string key = absl::StrCat("context_", ctx, "_batch_", b);
      if (tps("freekv", ctx, b) > 0 && tps("full", ctx, b) > 0) j["ratios"][key]["freekv_over_full_tokens_per_second"] = tps("freekv", ctx, b) / tps("full", ctx, b);
      if (tps("freekv", ctx, b) > 0 && tps("quest", ctx, b) > 0) j["ratios"][key]["freekv_over_quest_step_time"] = tps("quest", ctx, b) / tps("freekv", ctx, b);
      if (tps("freekv", ctx, b) > 0 && tps("arkvale", ctx, b) > 0) j["ratios"][key]["freekv_over_arkvale_tokens_per_second"] = tps("freekv", ctx, b) / tps("arkvale", ctx, b);
    }
  }
  if (tps("full", 1024, 1) > 0 && tps("full", 8192, 1) > 0) j["ratio_decode_8k_over_1k_batch1"] = tps("full", 8192, 1) / tps("full", 1024, 1);
  const std::string text = j.dump(2);
  std::cout << text << "\n";
  if (!out.empty()) {
    if (absl::Status s = write_file(out, text + "\n"); !s.ok()) return report_error("bench", s);
  }
  return 0;
}

}  // namespace freekv
