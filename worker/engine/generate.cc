#include "worker/engine/generate.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

namespace freekv {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string StopStringFilter::push(std::string_view text) {
  if (stopped_) return {};
  held_.append(text);
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    if (s.empty()) continue;
    size_t at = held_.find(s);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  // Keep the longest tail of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t n = std::min(s.size() - (s.empty() ? 0 : 1), held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopStringFilter::flush() {
  if (stopped_) return {};
  std::string out;
  out.swap(held_);
  return out;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::load(const std::string& model_dir, const EngineOptions& options) {
  if (options.page_tokens < 1 || options.page_tokens > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("page tokens must be in [1, 4096], got ", options.page_tokens));
  }
  if (options.prefill_chunk < 1) {
    return absl::InvalidArgumentError(absl::StrCat("prefill chunk must be >= 1, got ", options.prefill_chunk));
  }
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  FREEKV_ASSIGN_OR_RETURN(e->weights_, load_model_weights(model_dir));
  FREEKV_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::load((std::filesystem::path(model_dir) / "tokenizer.json").string()));
  e->threads_ = std::make_unique<ThreadPool>(options.threads);
  const ModelConfig& c = e->weights_->config;
  KvGeometry g;
  g.n_layers = c.n_layers;
  g.n_kv_heads = c.n_kv_heads;
  g.head_dim = c.head_dim;
  g.page_tokens = options.page_tokens;
  g.dtype = options.kv_dtype;
  if (options.kv_memory < g.block_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("KV memory of ", options.kv_memory, " bytes cannot hold one page (",
                                                   g.block_bytes(), " bytes)"));
  }
  e->kv_pool_ = std::make_unique<KvBlockPool>(g, options.kv_memory);
  e->forward_ = std::make_unique<ForwardPass>(*e->weights_, *e->threads_);
  return e;
}

absl::Status Engine::validate(const GenerateRequest& r) const {
  const ModelConfig& c = weights_->config;
  if (r.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty; give at least one token");
  for (int32_t id : r.prompt) {
    if (id < 0 || id >= c.vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id, " is outside the model's vocabulary [0, ", c.vocab, ")"));
    }
  }
  if (r.max_tokens < 1) return absl::InvalidArgumentError(absl::StrCat("max tokens must be >= 1, got ", r.max_tokens));
  if (int64_t(r.prompt.size()) + r.max_tokens > c.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", r.prompt.size(), " tokens) + max tokens (", r.max_tokens, ") exceeds the model's ", c.max_positions,
        " positions (max_position_embeddings); shorten the prompt or lower max tokens"));
  }
  return validate_sampling(r.sampling);
}

absl::StatusOr<GenerateResult> Engine::generate(const GenerateRequest& r,
                                                const std::function<void(std::string_view)>& on_text) {
  FREEKV_RETURN_IF_ERROR(validate(r));
  const ModelConfig& c = weights_->config;
  const int64_t vocab = c.vocab;
  GenerateResult out;
  out.stats.prompt_tokens = int64_t(r.prompt.size());
  SequenceKv kv(kv_pool_.get());
  Sampler sampler(r.sampling);
  StreamingDetokenizer detok(*tokenizer_);
  StopStringFilter stops(r.stop_strings);
  std::vector<float> logits;
  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return;
    out.text += piece;
    if (on_text) on_text(piece);
  };

  auto t0 = std::chrono::steady_clock::now();
  const int64_t P = int64_t(r.prompt.size());
  for (int64_t start = 0; start < P; start += options_.prefill_chunk) {
    const int64_t n = std::min(options_.prefill_chunk, P - start);
    StepInput in{&kv, r.prompt.data() + start, n, r.keep_logits};
    FREEKV_RETURN_IF_ERROR(forward_->step({in}, &logits));
    if (r.keep_logits) out.logits.insert(out.logits.end(), logits.begin(), logits.end());
  }
  // The last row is the logits of the last prompt position: what the first token is sampled from.
  std::vector<float> last(logits.end() - vocab, logits.end());
  out.stats.prefill_seconds = seconds_since(t0);

  auto t1 = std::chrono::steady_clock::now();
  out.finish_reason = "length";
  for (int64_t i = 0; i < r.max_tokens; ++i) {
    if (i > 0) {
      const int32_t prev = out.tokens.back();
      StepInput in{&kv, &prev, 1, false};
      FREEKV_RETURN_IF_ERROR(forward_->step({in}, &logits));
      last.assign(logits.begin(), logits.end());
    }
    if (r.keep_logits) out.logits.insert(out.logits.end(), last.begin(), last.end());
    const int32_t tok = sampler.sample(last.data(), vocab);
    out.tokens.push_back(tok);
    const bool eos = !r.ignore_eos && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), tok) != c.eos_token_ids.end();
    const bool stop_id = std::find(r.stop_ids.begin(), r.stop_ids.end(), tok) != r.stop_ids.end();
    if (eos || stop_id) {
      out.finish_reason = "stop";
      break;
    }
    emit(stops.push(detok.push(tok)));
    if (stops.stopped()) {
      out.finish_reason = "stop";
      break;
    }
  }
  if (!stops.stopped()) {
    emit(stops.push(detok.flush()));
    emit(stops.flush());
  }
  out.stats.generated_tokens = int64_t(out.tokens.size());
  out.stats.decode_seconds = seconds_since(t1);
  return out;
}

}  // namespace freekv
