// `freekv run`: one prompt, one process, no services. Streams the continuation to stdout (or prints
// one JSON object with --json) and can dump every logits row it computed as .npy.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "common/file_util.h"
#include "common/npy.h"
#include "kernels/ops.h"
#include "nlohmann/json.hpp"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/request_flags.h"

namespace freekv {

nlohmann::json recall_stats_json(const RetrievalStats& s) {
  return {{"pages_recalled", s.pages_recalled},
          {"bytes_recalled", s.bytes_recalled},
          {"sync_recalls", s.sync_recalls},
          {"async_recalls", s.async_recalls},
          {"recall_wait_seconds", s.recall_wait_seconds},
          {"correction_checks", s.correction_checks},
          {"correction_triggers", s.correction_triggers},
          {"correction_rate", s.correction_checks > 0 ? double(s.correction_triggers) / double(s.correction_checks) : 0.0},
          {"selection_steps", s.selection_steps}};
}

nlohmann::json retrieval_stats_json(const RetrievalConfig& config, const GenerateStats& st) {
  nlohmann::json j = recall_stats_json(st.retrieval);
  j["policy"] = policy_name(config.policy);
  for (const RetrievalStats& layer : st.retrieval_per_layer) j["per_layer"].push_back(recall_stats_json(layer));
  return j;
}

int cmd_run(int argc, char** argv) {
  std::string model = FREEKV_DEFAULT_MODEL_DIR, dump_logits;
  bool json = false;
  RequestFlags request;
  EngineFlags engine_flags;
  ArgParser p("freekv run [--model DIR] (--prompt TEXT | --prompt-file F) [--chat [--system TEXT] [--messages F]] [--max-tokens N] [options]",
              "Generates a continuation of the prompt with the model in this process (on the CPU, or --device cuda:N).");
  p.add_string("model", &model, "Hugging Face model directory");
  request.add_to(p);
  p.add_bool("json", &json, "print one JSON object: prompt_tokens, tokens, text, finish_reason, timing");
  p.add_string("dump-logits", &dump_logits, "write float32 .npy [prompt + generated, vocab] of the logits");
  engine_flags.add_to(p);
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;

  auto prompt = request.read_prompt();
  if (!prompt.ok()) return report_error("run", prompt.status());
  if (prompt->empty() && request.messages_file.empty()) {
    return report_error("run", absl::InvalidArgumentError("give --prompt or --prompt-file"));
  }
  auto options = engine_flags.to_options();
  if (!options.ok()) return report_error("run", options.status());
  auto kvstore = engine_flags.start_kvstore(&*options, model);
  if (!kvstore.ok()) return report_error("run", kvstore.status());
  const auto load_start = std::chrono::steady_clock::now();
  auto engine = Engine::load(model, *options);
  if (!engine.ok()) return report_error("run", engine.status());
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();

  GenerateRequest req;
  auto messages = request.chat_messages(*prompt);
  if (!messages.ok()) return report_error("run", messages.status());
  if (request.chat) {
    auto chat = chat_prompt((*engine)->chat_template(), (*engine)->tokenizer(), *messages);
    if (!chat.ok()) return report_error("run", chat.status());
    req.prompt = std::move(chat->ids);
    if (chat->end_of_turn_id >= 0) req.stop_ids.push_back(chat->end_of_turn_id);
  } else {
    req.prompt = (*engine)->tokenizer().encode(*prompt, !request.raw_prompt);
  }
  req.max_tokens = request.max_tokens;
  req.sampling = request.sampling();
  req.stop_strings = request.stops;
  req.ignore_eos = request.ignore_eos;
  req.keep_logits = !dump_logits.empty();
  auto stream = [&](std::string_view piece) {
    if (!json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  auto result = (*engine)->generate(req, stream);
  if (!result.ok()) return report_error("run", result.status());
  const GenerateStats& st = result->stats;
  const double decode_tps = st.generated_tokens > 1 ? double(st.generated_tokens - 1) / st.decode_seconds : 0;
  const double prefill_tps = double(st.prompt_tokens) / st.prefill_seconds;
  if (!dump_logits.empty()) {
    const int64_t vocab = (*engine)->weights().config.vocab;
    const int64_t rows = int64_t(result->logits.size()) / vocab;
    if (absl::Status s = write_npy_f32(dump_logits, result->logits.data(), {rows, vocab}); !s.ok()) {
      return report_error("run", s);
    }
  }
  if (json) {
    nlohmann::json j;
    j["prompt_tokens"] = req.prompt;
    j["tokens"] = result->tokens;
    j["text"] = result->text;
    j["finish_reason"] = result->finish_reason;
    // How the CPU multiplied bf16 weights (kernels/ops.h): what a comparison of these logits must allow for.
    if (options->device.name == "cpu") j["matmul_arithmetic"] = matmul_arithmetic_name(matmul_arithmetic());
    j["timing"] = {{"load_seconds", load_seconds},  // weights mapped and every page touched (common/file_util.h)
                   {"prefill_seconds", st.prefill_seconds},
                   {"decode_seconds", st.decode_seconds},
                   {"time_to_first_token_seconds", st.prefill_seconds},
                   {"prefill_tokens_per_second", prefill_tps},
                   {"decode_tokens_per_second", decode_tps}};
    j["retrieval"] = retrieval_stats_json(options->retrieval, st);
    j["kv_memory"] = {{"peak_bytes", st.kv_peak_bytes}, {"digest_bytes", st.digest_bytes},
                      {"block_bytes", (*engine)->kv_pool().geometry().block_bytes()}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::printf("\n");
    std::fprintf(stderr, "freekv run: %lld prompt tokens in %.3f s (%.1f tok/s), %lld generated in %.3f s (%.2f tok/s), finish: %s\n",
                 (long long)st.prompt_tokens, st.prefill_seconds, prefill_tps, (long long)st.generated_tokens,
                 st.decode_seconds, decode_tps, result->finish_reason.c_str());
  }
  return 0;
}

}  // namespace freekv
