// `freekv eval`: accuracy of the retrieval policies on locally generated long-context tasks, and their
// agreement with full attention. Works with any model directory; a random model will not solve
// passkey or key-value retrieval (its accuracy is the floor), but agreement is meaningful for any model.
//
//   passkey    needle sentence at each --depths fraction of a filler haystack of each --contexts size
//   needle     four facts of one form in the haystack, the one at each depth asked
//   kv         one key's value among random "key": "value" pairs
//   agreement  greedy generation of --agreement-tokens under `full`, then each policy teacher-forced on
//              the same tokens: first divergence (first step whose top-1 differs), top-1 match rate,
//              mean KL(full ‖ policy) of the next-token distributions
//   dynamics   the model's own query dynamics while it generates --agreement-tokens after a passkey
//              prompt: per layer and KV head, the cosine of adjacent steps' post-RoPE queries (averaged
//              over the head's query group, as FreeKV's correction check does), and the share of steps
//              a correction threshold τ of 0.8 or 0.9 would re-select (runs under the first policy)
//
// Policies other than `full` run once per --budgets entry (default: --budget). One engine runs them all
// (each request names its policy). For passkey, needle and kv each case is prefilled once, in a kvstore
// session that every policy then continues (--share-prefill, the default): prefill attends densely under
// every policy, so the KV is the same, and each policy still prefills the case's last tokens itself (a
// dense chunk, as in a fresh request) before it decodes; the answers equal separate prefills'
// (tests/cli/eval_and_policies.sh), at a fraction of the time for long contexts.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "kernels/ops.h"
#include "nlohmann/json.hpp"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/eval_tasks.h"
#include "tools/run_info.h"

namespace freekv {
namespace {

struct Agreement {
  int64_t first_divergence = -1;  // -1: none
  double top1_match = 0, mean_kl = 0;
};

Agreement compare(const std::vector<float>& full, const std::vector<float>& other, int64_t vocab, int64_t first_row) {
  Agreement a;
  const int64_t rows = int64_t(full.size()) / vocab;
  int64_t matches = 0;
  for (int64_t r = first_row; r < rows; ++r) {
    const float* p = full.data() + r * vocab;
    const float* q = other.data() + r * vocab;
    const int64_t ap = std::max_element(p, p + vocab) - p, aq = std::max_element(q, q + vocab) - q;
    if (ap == aq) ++matches;
    else if (a.first_divergence < 0) a.first_divergence = r - first_row;
    // KL(P ‖ Q) of the softmaxes, in double.
    const double mp = *std::max_element(p, p + vocab), mq = *std::max_element(q, q + vocab);
    double zp = 0, zq = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      zp += std::exp(p[i] - mp);
      zq += std::exp(q[i] - mq);
    }
    double kl = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      const double lp = p[i] - mp - std::log(zp), lq = q[i] - mq - std::log(zq);
      kl += std::exp(lp) * (lp - lq);
    }
    a.mean_kl += kl;
  }
  const int64_t n = std::max<int64_t>(1, rows - first_row);
  a.top1_match = double(matches) / double(n);
  a.mean_kl /= double(n);
  return a;
}

// Adjacent-step query cosines per (layer, KV head) of one generation, read through the query hook.
class QueryCosineRecorder {
 public:
  explicit QueryCosineRecorder(const ModelConfig& c)
      : layers_(c.n_layers), kv_heads_(c.n_kv_heads), group_(c.n_heads / c.n_kv_heads), head_dim_(c.head_dim),
        prev_(size_t(c.n_layers)), cosines_(size_t(c.n_layers) * size_t(c.n_kv_heads)) {}

  // q: [n_heads, head_dim] post-RoPE queries of one decode step at `layer`.
  void observe(int64_t layer, const float* q) {
    std::vector<float>& prev = prev_[size_t(layer)];
    const int64_t n = kv_heads_ * group_ * head_dim_;
    if (!prev.empty()) {
      for (int64_t h = 0; h < kv_heads_; ++h) {
        double cos = 0;
        for (int64_t g = 0; g < group_; ++g) {
          const int64_t off = (h * group_ + g) * head_dim_;
          cos += cosine_similarity(q + off, prev.data() + off, head_dim_) / double(group_);
        }
        cosines_[size_t(layer * kv_heads_ + h)].push_back(cos);
      }
    }
    prev.assign(q, q + n);
  }

  // Per (layer, KV head) and over all: mean, 10th percentile, median, shares above 0.84 and 0.9.
  nlohmann::json summary() const {
    nlohmann::json out = nlohmann::json::array();
    std::vector<double> all;
    for (int64_t l = 0; l < layers_; ++l) {
      for (int64_t h = 0; h < kv_heads_; ++h) {
        const std::vector<double>& c = cosines_[size_t(l * kv_heads_ + h)];
        all.insert(all.end(), c.begin(), c.end());
        nlohmann::json row = describe(c);
        row["layer"] = l;
        row["kv_head"] = h;
        out.push_back(row);
      }
    }
    nlohmann::json total = describe(all);
    total["layer"] = "all";
    total["kv_head"] = "all";
    out.push_back(total);
    return out;
  }

 private:
  static nlohmann::json describe(std::vector<double> c) {
    if (c.empty()) return {{"steps", 0}};
    std::sort(c.begin(), c.end());
    auto share = [&](auto pred) { return double(std::count_if(c.begin(), c.end(), pred)) / double(c.size()); };
    double mean = 0;
    for (double v : c) mean += v / double(c.size());
    return {{"steps", c.size()},
            {"mean_cosine", mean},
            {"p10_cosine", c[c.size() / 10]},
            {"median_cosine", c[c.size() / 2]},
            {"share_above_0.84", share([](double v) { return v > 0.84; })},
            {"share_above_0.9", share([](double v) { return v > 0.9; })},
            {"correction_rate_tau_0.8", share([](double v) { return v < 0.8; })},
            {"correction_rate_tau_0.9", share([](double v) { return v < 0.9; })}};
  }

  int64_t layers_, kv_heads_, group_, head_dim_;
  std::vector<std::vector<float>> prev_;       // [layer] the previous step's q [n_heads * head_dim]
  std::vector<std::vector<double>> cosines_;   // [layer * kv_heads + head] one cosine per step
};

std::vector<double> parse_doubles(const std::string& s) {
  std::vector<double> out;
  for (auto part : absl::StrSplit(s, ',', absl::SkipEmpty())) out.push_back(std::stod(std::string(part)));
  return out;
}

// One column of the evaluation: a policy at one budget, run as a per-request override on one engine.
struct EvalPolicy {
  RetrievalConfig retrieval;
  std::string name;
  int64_t budget = 0;  // 0 for full
  std::string budget_text() const { return budget > 0 ? std::to_string(budget) : "-"; }
};

// Prompt tokens the shared prefill of a `prompt_tokens` prompt leaves to each policy: at least two, so
// the policy's own first step is a (dense) prefill chunk, as in a request that prefills everything
// itself, and not a one-token decode step. Returns 0 when the prompt is too short to share.
int64_t shared_prefix_tokens(int64_t prompt_tokens, int64_t page_tokens) {
  return (prompt_tokens - 2) / page_tokens * page_tokens;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  std::string model = FREEKV_DEFAULT_MODEL_DIR, tasks = "passkey,needle,kv,agreement", contexts = "2048,4096,8192",
              depths = "0.1,0.5,0.9", policies = "full,streaming,quest,arkvale,freekv", budgets, out;
  int64_t trials = 2, agreement_tokens = 32, seed = 1;
  bool share_prefill = true;
  EngineFlags engine_flags;
  ArgParser p("freekv eval [--model DIR] [--tasks passkey,needle,kv,agreement,dynamics] [--contexts 2048,...]\n"
              "            [--policies ...] [--budgets 256,512,1024]",
              "Runs locally generated long-context tasks under each retrieval policy and prints a table (and JSON).");
  p.add_string("model", &model, "Hugging Face model directory");
  p.add_string("tasks", &tasks, "comma-separated: passkey, needle, kv, agreement, dynamics");
  p.add_string("contexts", &contexts, "comma-separated prompt lengths in tokens");
  p.add_string("depths", &depths, "comma-separated needle depths in [0, 1]");
  p.add_string("policies", &policies, "comma-separated policies to evaluate");
  p.add_string("budgets", &budgets, "comma-separated budgets in tokens for the policies other than full (default: --budget)");
  p.add_int("trials", &trials, "cases per (task, context, depth)");
  p.add_int("agreement-tokens", &agreement_tokens, "tokens generated for the agreement and dynamics tasks");
  p.add_int("seed", &seed, "seed of the generated tasks");
  p.add_bool("share-prefill", &share_prefill,
             "prefill each case once in a kvstore session that every policy continues (prefill attends densely "
             "under every policy, so each sees the same KV); false: each policy prefills each case itself");
  p.add_string("out", &out, "also write the results as JSON here");
  engine_flags.add_to(p);
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;
  if (absl::Status s = engine_flags.require_cpu("eval"); !s.ok()) return report_error("eval", s);
  if (share_prefill && engine_flags.kvstore == "none") {
    return report_error("eval", absl::InvalidArgumentError(
                                    "--share-prefill keeps each case in a kvstore session; drop --kvstore none or add "
                                    "--share-prefill=false"));
  }
  if (share_prefill && engine_flags.kvstore == "auto") engine_flags.kvstore = "spawn";
  auto options = engine_flags.to_options();
  if (!options.ok()) return report_error("eval", options.status());
  auto policy_list = parse_policy_list(policies);
  if (!policy_list.ok()) return report_error("eval", policy_list.status());
  auto kvstore = engine_flags.start_kvstore_for(*policy_list, &*options, model);
  if (!kvstore.ok()) return report_error("eval", kvstore.status());
  std::vector<int64_t> ctx_list, budget_list;
  for (double c : parse_doubles(contexts)) ctx_list.push_back(int64_t(c));
  for (double b : parse_doubles(budgets)) budget_list.push_back(int64_t(b));
  if (budget_list.empty()) budget_list.push_back(options->retrieval.budget);
  const std::vector<double> depth_list = parse_doubles(depths);
  const std::vector<std::string> task_list = absl::StrSplit(tasks, ',', absl::SkipEmpty());
  for (const std::string& task : task_list) {
    if (task != "passkey" && task != "needle" && task != "kv" && task != "agreement" && task != "dynamics") {
      return report_error("eval", absl::InvalidArgumentError("unknown task '" + task +
                                                             "'; use passkey, needle, kv, agreement or dynamics"));
    }
  }
  std::vector<EvalPolicy> columns;
  for (PolicyKind policy : *policy_list) {
    for (int64_t budget : policy == PolicyKind::kFull ? std::vector<int64_t>{0} : budget_list) {
      EvalPolicy c{options->retrieval, policy_name(policy), budget};
      c.retrieval.policy = policy;
      if (budget > 0) c.retrieval.budget = budget;
      columns.push_back(c);
    }
  }
  // One engine runs every column (each request names its policy), so the model is loaded once.
  options->retrieval = columns.front().retrieval;
  auto engine = Engine::load(model, *options);
  if (!engine.ok()) return report_error("eval", engine.status());
  Engine& e = **engine;
  share_prefill = share_prefill && e.kvstore() != nullptr;

  nlohmann::json j;
  j["model"] = model;
  j["machine"] = machine_description();
  j["commit"] = git_commit();
  j["retrieval"] = {{"sink", options->retrieval.sink}, {"recent", options->retrieval.recent},
                    {"page_tokens", options->page_tokens}, {"correction_threshold", options->retrieval.correction_threshold}};
  j["shared_prefill"] = share_prefill;
  j["results"] = nlohmann::json::array();
  auto row = [&](const std::string& task, const EvalPolicy& c, int64_t ctx) {
    nlohmann::json r = {{"task", task}, {"policy", c.name}, {"context", ctx}};
    if (c.budget > 0) r["budget"] = c.budget;
    return r;
  };
  auto run = [&](const EvalPolicy& c, const std::vector<int32_t>& prompt, const std::string& session, int64_t max_tokens,
                 std::vector<int32_t> forced, bool logits) -> absl::StatusOr<GenerateResult> {
    GenerateRequest r;
    r.prompt = prompt;
    r.session_id = session;
    r.prompt_is_context = !session.empty();
    r.max_tokens = max_tokens;
    r.forced_tokens = std::move(forced);
    r.keep_logits = logits;
    r.ignore_eos = logits;
    r.retrieval = c.retrieval;
    return e.generate(r, nullptr);
  };
  int64_t cases = 0;
  std::printf("%-10s %-10s %6s %8s %7s %10s %s\n", "task", "policy", "budget", "context", "depth", "accuracy", "detail");
  for (const std::string& task : task_list) {
    for (int64_t ctx : ctx_list) {
      if (task == "dynamics") {
        // A property of the model: measured once, under the first column.
        const EvalPolicy& c = columns.front();
        std::mt19937_64 rng(uint64_t(seed) * 7919u + uint64_t(ctx));
        QueryCosineRecorder dyn(e.weights().config);
        e.forward().set_query_hook([&dyn](const Sequence*, int64_t layer, float* q) { dyn.observe(layer, q); });
        GenerateRequest r;
        r.prompt = e.tokenizer().encode(make_passkey_case(e.tokenizer(), ctx, 0.5, rng).prompt, true);
        r.max_tokens = agreement_tokens;
        r.ignore_eos = true;
        r.retrieval = c.retrieval;
        auto result = e.generate(r, nullptr);
        e.forward().set_query_hook(nullptr);
        if (!result.ok()) return report_error("eval", result.status());
        nlohmann::json summary = dyn.summary();
        const nlohmann::json& all = summary.back();
        std::printf("%-10s %-10s %6s %8lld %7s %10s mean cosine %.3f, above 0.9 %.2f, correction rate τ=0.8 %.3f τ=0.9 %.3f\n",
                    task.c_str(), c.name.c_str(), c.budget_text().c_str(), (long long)ctx, "-", "-",
                    all.value("mean_cosine", 0.0), all.value("share_above_0.9", 0.0),
                    all.value("correction_rate_tau_0.8", 0.0), all.value("correction_rate_tau_0.9", 0.0));
        nlohmann::json r_json = row(task, c, ctx);
        r_json["generated_tokens"] = agreement_tokens;
        r_json["heads"] = summary;
        j["results"].push_back(r_json);
        continue;
      }
      if (task == "agreement") {
        // Full generates; every other column is teacher-forced on its tokens.
        if (columns.front().retrieval.policy != PolicyKind::kFull) {
          return report_error("eval", absl::InvalidArgumentError("agreement needs 'full' first in --policies"));
        }
        const std::vector<int32_t> prompt = e.tokenizer().encode(make_filler(e.tokenizer(), ctx), true);
        GenerateResult full_run;
        for (const EvalPolicy& c : columns) {
          const bool is_full = c.retrieval.policy == PolicyKind::kFull;
          auto r = run(c, prompt, "", agreement_tokens, is_full ? std::vector<int32_t>{} : full_run.tokens, true);
          if (!r.ok()) return report_error("eval", r.status());
          if (is_full) full_run = *r;
          const int64_t prompt_rows = int64_t(r->logits.size() / size_t(e.weights().config.vocab)) - int64_t(r->tokens.size());
          Agreement a = compare(full_run.logits, r->logits, e.weights().config.vocab, prompt_rows);
          const RetrievalStats& st = r->stats.retrieval;
          const double correction_rate = st.correction_checks > 0 ? double(st.correction_triggers) / double(st.correction_checks) : 0.0;
          std::printf("%-10s %-10s %6s %8lld %7s %10.3f first divergence %lld, mean KL %.4g, corrections %lld/%lld\n",
                      task.c_str(), c.name.c_str(), c.budget_text().c_str(), (long long)ctx, "-", a.top1_match,
                      (long long)a.first_divergence, a.mean_kl, (long long)st.correction_triggers, (long long)st.correction_checks);
          nlohmann::json r_json = row(task, c, ctx);
          r_json.update({{"top1_match_rate", a.top1_match}, {"first_divergence", a.first_divergence}, {"mean_kl", a.mean_kl},
                         {"correction_rate", correction_rate}});
          j["results"].push_back(r_json);
        }
        continue;
      }
      for (double depth : depth_list) {
        std::mt19937_64 rng(uint64_t(seed) * 1000003u + uint64_t(ctx) * 31u + uint64_t(depth * 1000));
        std::vector<int64_t> correct(columns.size(), 0);
        std::vector<nlohmann::json> outputs(columns.size(), nlohmann::json::array());
        for (int64_t t = 0; t < trials; ++t) {
          EvalCase ec = task == "passkey" ? make_passkey_case(e.tokenizer(), ctx, depth, rng)
                        : task == "needle" ? make_needle_case(e.tokenizer(), ctx, depth, rng)
                                           : make_kv_case(e.tokenizer(), ctx, depth, rng);
          const std::vector<int32_t> prompt = e.tokenizer().encode(ec.prompt, true);
          const int64_t shared = share_prefill ? shared_prefix_tokens(int64_t(prompt.size()), options->page_tokens) : 0;
          const std::string session = shared > 0 ? absl::StrCat("eval-", ++cases) : "";
          if (!session.empty()) {
            // The prefix's KV is the same under every policy (prefill is dense); its one sampled token
            // is dropped again by the first column's prompt_is_context.
            auto prefill = run(columns.front(), {prompt.begin(), prompt.begin() + shared}, session, 1, {}, false);
            if (!prefill.ok()) return report_error("eval", prefill.status());
          }
          for (size_t i = 0; i < columns.size(); ++i) {
            auto r = run(columns[i], prompt, session, task == "kv" ? 14 : 10, {}, false);
            if (!r.ok()) return report_error("eval", r.status());
            correct[i] += r->text.find(ec.answer) != std::string::npos ? 1 : 0;
            outputs[i].push_back(r->text);
          }
          if (!session.empty()) {
            if (absl::Status s = e.close_sequence_session(session); !s.ok()) return report_error("eval", s);
          }
        }
        for (size_t i = 0; i < columns.size(); ++i) {
          const double acc = double(correct[i]) / double(std::max<int64_t>(1, trials));
          std::printf("%-10s %-10s %6s %8lld %7.2f %10.3f %lld/%lld\n", task.c_str(), columns[i].name.c_str(),
                      columns[i].budget_text().c_str(), (long long)ctx, depth, acc, (long long)correct[i], (long long)trials);
          nlohmann::json r_json = row(task, columns[i], ctx);
          r_json.update({{"depth", depth}, {"accuracy", acc}, {"trials", trials}, {"outputs", outputs[i]}});
          j["results"].push_back(r_json);
        }
        std::fflush(stdout);
      }
    }
  }
  if (!out.empty()) {
    if (absl::Status s = write_file(out, j.dump(2) + "\n"); !s.ok()) return report_error("eval", s);
  }
  return 0;
}

}  // namespace freekv
