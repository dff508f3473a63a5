// `freekv eval`: accuracy of the retrieval policies on locally generated long-context tasks, and their
// agreement with full attention. Works with any model directory; a random model will not solve
// passkey or key-value retrieval (its accuracy is the floor), but agreement is meaningful for any model.
//
//   passkey    needle sentence at each --depths fraction of a filler haystack of each --contexts size
//   kv         one key's value among random "key": "value" pairs
//   agreement  greedy generation of --agreement-tokens under `full`, then each policy teacher-forced on
//              the same tokens: first divergence (first step whose top-1 differs), top-1 match rate,
//              mean KL(full ‖ policy) of the next-token distributions
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/eval_tasks.h"

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

std::vector<double> parse_doubles(const std::string& s) {
  std::vector<double> out;
  for (auto part : absl::StrSplit(s, ',', absl::SkipEmpty())) out.push_back(std::stod(std::string(part)));
  return out;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  std::string model = FREEKV_DEFAULT_MODEL_DIR, tasks = "passkey,kv,agreement", contexts = "2048,4096,8192",
              depths = "0.1,0.5,0.9", policies = "full,streaming,quest,arkvale,freekv", out;
  int64_t trials = 2, agreement_tokens = 32, seed = 1;
  EngineFlags engine_flags;
  ArgParser p("freekv eval [--model DIR] [--tasks passkey,kv,agreement] [--contexts 2048,...] [--policies ...]",
              "Runs locally generated long-context tasks under each retrieval policy and prints a table (and JSON).");
  p.add_string("model", &model, "Hugging Face model directory");
  p.add_string("tasks", &tasks, "comma-separated: passkey, kv, agreement");
  p.add_string("contexts", &contexts, "comma-separated prompt lengths in tokens");
  p.add_string("depths", &depths, "comma-separated needle depths in [0, 1]");
  p.add_string("policies", &policies, "comma-separated policies to evaluate");
  p.add_int("trials", &trials, "cases per (task, context, depth)");
  p.add_int("agreement-tokens", &agreement_tokens, "tokens generated for the agreement task");
  p.add_int("seed", &seed, "seed of the generated tasks");
  p.add_string("out", &out, "also write the results as JSON here");
  engine_flags.add_to(p);
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;
  auto options = engine_flags.to_options();
  if (!options.ok()) return report_error("eval", options.status());
  auto policy_list = parse_policy_list(policies);
  if (!policy_list.ok()) return report_error("eval", policy_list.status());
  auto kvstore = engine_flags.start_kvstore_for(*policy_list, &*options, model);
  if (!kvstore.ok()) return report_error("eval", kvstore.status());
  std::vector<int64_t> ctx_list;
  for (double c : parse_doubles(contexts)) ctx_list.push_back(int64_t(c));
  const std::vector<double> depth_list = parse_doubles(depths);
  const std::vector<std::string> task_list = absl::StrSplit(tasks, ',', absl::SkipEmpty());

  nlohmann::json j;
  j["model"] = model;
  j["retrieval"] = {{"budget", options->retrieval.budget}, {"sink", options->retrieval.sink},
                    {"recent", options->retrieval.recent}, {"correction_threshold", options->retrieval.correction_threshold}};
  // Agreement needs full's tokens and logits first.
  std::map<int64_t, GenerateResult> full_runs;
  std::printf("%-10s %-10s %8s %7s %10s %s\n", "task", "policy", "context", "depth", "accuracy", "detail");
  for (PolicyKind policy : *policy_list) {
    const std::string name = policy_name(policy);
    auto engine = Engine::load(model, engine_flags.for_policy(*options, policy));
    if (!engine.ok()) return report_error("eval", engine.status());
    Engine& e = **engine;
    auto run = [&](const std::string& prompt, int64_t max_tokens, std::vector<int32_t> forced, bool logits)
        -> absl::StatusOr<GenerateResult> {
      GenerateRequest r;
      r.prompt = e.tokenizer().encode(prompt, true);
      r.max_tokens = max_tokens;
      r.forced_tokens = std::move(forced);
      r.keep_logits = logits;
      r.ignore_eos = logits;
      return e.generate(r, nullptr);
    };
    for (const std::string& task : task_list) {
      for (int64_t ctx : ctx_list) {
        if (task == "agreement") {
          const std::string prompt = make_filler(e.tokenizer(), ctx);
          std::vector<int32_t> forced;
          if (policy != PolicyKind::kFull) {
            if (full_runs.count(ctx) == 0) return report_error("eval", absl::InvalidArgumentError("agreement needs 'full' first in --policies"));
            forced = full_runs[ctx].tokens;
          }
          auto r = run(prompt, agreement_tokens, forced, true);
          if (!r.ok()) return report_error("eval", r.status());
          if (policy == PolicyKind::kFull) full_runs[ctx] = *r;
          const int64_t prompt_rows = int64_t(r->logits.size() / size_t(e.weights().config.vocab)) - int64_t(r->tokens.size());
          Agreement a = compare(full_runs[ctx].logits, r->logits, e.weights().config.vocab, prompt_rows);
          std::printf("%-10s %-10s %8lld %7s %10.3f first divergence %lld, mean KL %.4g, corrections %lld/%lld\n",
                      task.c_str(), name.c_str(), (long long)ctx, "-", a.top1_match, (long long)a.first_divergence, a.mean_kl,
                      (long long)r->stats.retrieval.correction_triggers, (long long)r->stats.retrieval.correction_checks);
          j["results"].push_back({{"task", task}, {"policy", name}, {"context", ctx}, {"top1_match_rate", a.top1_match},
                                  {"first_divergence", a.first_divergence}, {"mean_kl", a.mean_kl},
                                  {"correction_rate", r->stats.retrieval.correction_checks > 0
                                                          ? double(r->stats.retrieval.correction_triggers) / double(r->stats.retrieval.correction_checks)
                                                          : 0.0}});
          continue;
        }
        for (double depth : depth_list) {
          std::mt19937_64 rng(uint64_t(seed) * 1000003u + uint64_t(ctx) * 31u + uint64_t(depth * 1000));
          int64_t correct = 0;
          for (int64_t t = 0; t < trials; ++t) {
            EvalCase c = task == "passkey" ? make_passkey_case(e.tokenizer(), ctx, depth, rng)
                                           : make_kv_case(e.tokenizer(), ctx, depth, rng);
            auto r = run(c.prompt, task == "passkey" ? 10 : 14, {}, false);
            if (!r.ok()) return report_error("eval", r.status());
            correct += r->text.find(c.answer) != std::string::npos ? 1 : 0;
          }
          const double acc = double(correct) / double(std::max<int64_t>(1, trials));
          std::printf("%-10s %-10s %8lld %7.2f %10.3f %lld/%lld\n", task.c_str(), name.c_str(), (long long)ctx, depth, acc,
                      (long long)correct, (long long)trials);
          j["results"].push_back({{"task", task}, {"policy", name}, {"context", ctx}, {"depth", depth},
                                  {"accuracy", acc}, {"trials", trials}});
        }
      }
    }
  }
  if (!out.empty()) {
    if (absl::Status s = write_file(out, j.dump(2) + "\n"); !s.ok()) return report_error("eval", s);
  }
  return 0;
}

}  // namespace freekv
