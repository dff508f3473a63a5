#include "worker/engine/active_request.h"

#include <algorithm>

namespace freekv {
namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

ActiveRequest::ActiveRequest(const ModelConfig& config, const Tokenizer& tokenizer, int64_t prefill_chunk,
                             GenerateRequest request, std::unique_ptr<Sequence> seq,
                             std::function<void(std::string_view)> on_text)
    : config_(config), prefill_chunk_(prefill_chunk), request_(std::move(request)), seq_(std::move(seq)),
      on_text_(std::move(on_text)), sampler_(request_.sampling), detok_(tokenizer), stops_(request_.stop_strings),
      start_(std::chrono::steady_clock::now()) {
  out_.finish_reason = "length";
}

StepInput ActiveRequest::next_input() {
  const int64_t prompt = int64_t(request_.prompt.size());
  if (fed_ < prompt) {
    last_input_ = std::min(prefill_chunk_, prompt - fed_);
    last_all_logits_ = request_.keep_logits;
    return StepInput{seq_.get(), request_.prompt.data() + fed_, last_input_, last_all_logits_};
  }
  last_input_ = 1;
  last_all_logits_ = false;
  last_token_ = out_.tokens.back();
  return StepInput{seq_.get(), &last_token_, 1, false};
}

void ActiveRequest::accept(const float* logits) {
  const int64_t vocab = config_.vocab;
  const int64_t rows = last_all_logits_ ? last_input_ : 1;
  const int64_t prompt = int64_t(request_.prompt.size());
  if (fed_ < prompt) {
    if (request_.keep_logits) out_.logits.insert(out_.logits.end(), logits, logits + rows * vocab);
    fed_ += last_input_;
    if (fed_ < prompt) return;  // more prompt to feed
    first_token_ = std::chrono::steady_clock::now();
    out_.stats.prefill_seconds = seconds_between(start_, first_token_);
  }
  // The last row is what the next token is sampled from.
  sample(logits + (rows - 1) * vocab);
}

void ActiveRequest::emit(const std::string& piece) {
  if (piece.empty()) return;
  out_.text += piece;
  if (on_text_) on_text_(piece);
}

void ActiveRequest::sample(const float* row) {
  const int64_t vocab = config_.vocab;
  if (request_.keep_logits) out_.logits.insert(out_.logits.end(), row, row + vocab);
  const size_t i = out_.tokens.size();
  const int32_t tok = i < request_.forced_tokens.size() ? request_.forced_tokens[i] : sampler_.sample(row, vocab);
  out_.tokens.push_back(tok);
  const auto& eos_ids = config_.eos_token_ids;
  const bool eos = !request_.ignore_eos && std::find(eos_ids.begin(), eos_ids.end(), tok) != eos_ids.end();
  const bool stop_id = std::find(request_.stop_ids.begin(), request_.stop_ids.end(), tok) != request_.stop_ids.end();
  if (eos || stop_id) {
    out_.finish_reason = "stop";
    finished_ = true;
  } else {
    emit(stops_.push(detok_.push(tok)));
    if (stops_.stopped()) {
      out_.finish_reason = "stop";
      finished_ = true;
    } else if (int64_t(out_.tokens.size()) >= request_.max_tokens) {
      finished_ = true;
    }
  }
  if (!finished_) return;
  if (!stops_.stopped()) {
    emit(stops_.push(detok_.flush()));
    emit(stops_.flush());
  }
  out_.stats.generated_tokens = int64_t(out_.tokens.size());
  out_.stats.decode_seconds = seconds_between(first_token_, std::chrono::steady_clock::now());
  out_.stats.retrieval = seq_->total_stats();
  out_.stats.retrieval_per_layer = seq_->stats();
  const TieredKv& kv = seq_->kv();
  out_.stats.kv_peak_bytes = kv.peak_blocks_held() * int64_t(kv.geometry().block_bytes());
  out_.stats.digest_bytes = kv.digest_bytes();
}

}  // namespace freekv
