#include "worker/engine/generate.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>

namespace freekv {
namespace {

KvstoreClient::Options kvstore_client_options(const EngineOptions& options) {
  KvstoreClient::Options ko;
  ko.worker_name = "freekv-engine";
  // Recalls in flight share this bounded pool of staging pairs, whatever the depth and the batch.
  ko.staging_pairs = uint32_t(options.recall_staging_pairs);
  return ko;
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
  // --attend-beyond-window: the operator chooses whole-context attention in the windowed layers too.
  ModelConfig& config = e->weights_->config;
  if (options.attend_beyond_window) {
    config.sliding_window = 0;
    config.windowed.clear();
  }
  // The CPU forward pass attends each windowed layer's window; a device backend attends the whole
  // context, so there requests stop at the window (ModelConfig::context_limit).
  config.windows_attended = options.device.name == "cpu";
  for (bool w : config.windowed) e->layer_windows_.push_back(w && config.windows_attended ? config.sliding_window : 0);
  FREEKV_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::load((std::filesystem::path(model_dir) / "tokenizer.json").string()));
  FREEKV_ASSIGN_OR_RETURN(e->chat_template_, ChatTemplate::load(model_dir));
  e->threads_ = std::make_unique<ThreadPool>(options.threads);
  std::random_device rd;
  e->private_prefix_ = absl::StrCat("private-", absl::Hex((uint64_t(rd()) << 32) | rd(), absl::kZeroPad16), "-");
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
  FREEKV_RETURN_IF_ERROR(validate_retrieval(options.retrieval, options.page_tokens, c.n_layers));
  e->kv_pool_ = std::make_unique<KvBlockPool>(g, options.kv_memory);
  e->forward_ = std::make_unique<ForwardPass>(*e->weights_, *e->threads_);
  if (!options.kvstore_socket.empty()) {
    if (options.recall_staging_pairs < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--recall-staging-pairs must be >= 1, got ", options.recall_staging_pairs));
    }
    auto client = KvstoreClient::connect(options.kvstore_socket, kvstore_client_options(options));
    if (!client.ok()) {
      return absl::Status(client.status().code(), absl::StrCat("attaching to the kvstore with --recall-staging-pairs ",
                                                               options.recall_staging_pairs, ": ",
                                                               client.status().message()));
    }
    e->kvstore_ = std::move(*client);
    e->recalls_ = std::make_unique<RecallQueue>(e->kvstore_.get());
  } else if (options.retrieval.offloaded()) {
    return absl::InvalidArgumentError(absl::StrCat("policy ", policy_name(options.retrieval.policy),
                                                   " offloads pages and needs a kvstore; give its socket (--kvstore)"));
  }
  if (options.device.name != "cpu") {
    // The GPU backend attends every sequence's whole KV from device memory: no retrieval policy, no
    // kvstore sessions yet.
    if (options.retrieval.policy != PolicyKind::kFull || !options.kvstore_socket.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--device ", options.device.name, " runs the full policy without a kvstore so far (retrieval and offload run on ",
          "the CPU engine only); use --policy full --kvstore none, or --device cpu"));
    }
    if (!options.make_device_backend) {
      return absl::InvalidArgumentError(
          absl::StrCat("this program has no backend for --device ", options.device.name, "; use --device cpu"));
    }
    FREEKV_ASSIGN_OR_RETURN(e->device_backend_, options.make_device_backend(*e->weights_, options));
  }
  return e;
}

absl::Status Engine::reattach_kvstore_if_gone() {
  if (kvstore_ == nullptr || !kvstore_->gone()) return absl::OkStatus();
  if (started_requests_ > 0) {
    return absl::UnavailableError("the kvstore went away; this worker attaches to it again once its running requests have "
                                  "ended (in moments); retry");
  }
  auto client = KvstoreClient::connect(options_.kvstore_socket, kvstore_client_options(options_));
  if (!client.ok()) {
    return absl::UnavailableError(absl::StrCat("the kvstore went away and does not answer yet (", client.status().message(),
                                               "); retry once it is back: sessions keep their KV in its pool"));
  }
  recalls_.reset();
  kvstore_ = std::move(*client);
  recalls_ = std::make_unique<RecallQueue>(kvstore_.get());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Sequence>> Engine::new_sequence(const std::string& session_id, bool ephemeral,
                                                                const RetrievalConfig* retrieval) {
  KvStoreBinding binding;
  if (kvstore_ != nullptr) {
    FREEKV_ASSIGN_OR_RETURN(KvSessionInfo info,
                            kvstore_->create_session(session_id, session_geometry(kv_pool_->geometry()), ephemeral));
    binding = {recalls_.get(), info.ref};
  }
  return std::make_unique<Sequence>(kv_pool_.get(), binding, retrieval != nullptr ? *retrieval : options_.retrieval,
                                    weights_->config.n_heads, threads_.get(), layer_windows_);
}

absl::StatusOr<std::unique_ptr<Sequence>> Engine::open_sequence(const std::string& session_id,
                                                                 std::vector<int32_t>* replay,
                                                                 const std::vector<int32_t>* context, int64_t* kept,
                                                                 const RetrievalConfig* retrieval) {
  replay->clear();
  if (kept != nullptr) *kept = 0;
  if (kvstore_ == nullptr) {
    return absl::FailedPreconditionError("sessions that outlive a request need a kvstore (--kvstore)");
  }
  const KvGeometry& g = kv_pool_->geometry();
  FREEKV_ASSIGN_OR_RETURN(KvSessionInfo info, kvstore_->open_session(session_id, session_geometry(g), /*create_if_missing=*/true));
  auto seq = std::make_unique<Sequence>(kv_pool_.get(), KvStoreBinding{recalls_.get(), info.ref},
                                        retrieval != nullptr ? *retrieval : options_.retrieval, weights_->config.n_heads,
                                        threads_.get(), layer_windows_);
  if (info.created) return seq;
  FREEKV_ASSIGN_OR_RETURN(std::vector<int32_t> ids, kvstore_->tokens(info.ref));
  if (context != nullptr) {
    const size_t common = size_t(std::mismatch(ids.begin(), ids.end(), context->begin(), context->end()).first - ids.begin());
    if (common < ids.size()) {
      FREEKV_RETURN_IF_ERROR(kvstore_->truncate(info.ref, common));
      ids.resize(common);
    }
    if (kept != nullptr) *kept = int64_t(common);
  }
  FREEKV_ASSIGN_OR_RETURN(KvSessionStats st, kvstore_->session_stats(session_id));
  // Pages count only where every layer committed them (a worker may have died between layers). At
  // least one stored id is left to replay, so a continuation without new prompt tokens has logits to
  // sample from (a worker that died right after completing a page leaves no pending token).
  int64_t pages = ids.empty() ? 0 : (int64_t(ids.size()) - 1) / g.page_tokens;
  for (const KvLayerStats& l : st.layers) pages = std::min<int64_t>(pages, l.highest_page + 1);
  RetrievalStats attach_stats;
  FREEKV_RETURN_IF_ERROR(seq->kv().attach(pages, int64_t(ids.size()), &attach_stats));
  replay->assign(ids.begin() + pages * g.page_tokens, ids.end());
  return seq;
}

absl::Status Engine::close_sequence_session(const std::string& session_id) {
  if (kvstore_ == nullptr) return absl::OkStatus();
  return kvstore_->close_session(session_id);
}

absl::Status Engine::validate(const GenerateRequest& r) const {
  const ModelConfig& c = weights_->config;
  // A kept session may continue without new tokens (start_request checks it holds some).
  if (r.prompt.empty() && r.session_id.empty()) return absl::InvalidArgumentError("the prompt is empty; give at least one token");
  for (int32_t id : r.prompt) {
    if (id < 0 || id >= c.vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id, " is outside the model's vocabulary [0, ", c.vocab, ")"));
    }
  }
  if (r.max_tokens < 1) return absl::InvalidArgumentError(absl::StrCat("max tokens must be >= 1, got ", r.max_tokens));
  if (int64_t(r.prompt.size()) + r.max_tokens > c.context_limit()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", r.prompt.size(), " tokens) + max tokens (", r.max_tokens, ") exceeds the model's ", c.context_limit(),
        " positions (", c.context_limit_source(), "); shorten the prompt or lower max tokens"));
  }
  if (r.retrieval) {
    FREEKV_RETURN_IF_ERROR(validate_retrieval(*r.retrieval, options_.page_tokens, c.n_layers));
    if (r.retrieval->offloaded() && kvstore_ == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("policy ", policy_name(r.retrieval->policy),
                                                     " offloads pages and needs an engine with a kvstore (--kvstore)"));
    }
    if (options_.device.name != "cpu" && r.retrieval->policy != PolicyKind::kFull) {
      return absl::InvalidArgumentError(absl::StrCat("--device ", options_.device.name, " runs the full policy only; ",
                                                     "policy ", policy_name(r.retrieval->policy), " needs --device cpu"));
    }
  }
  return validate_sampling(r.sampling);
}

absl::StatusOr<std::unique_ptr<ActiveRequest>> Engine::start_request(const GenerateRequest& r,
                                                                    std::function<void(std::string_view)> on_text) {
  FREEKV_RETURN_IF_ERROR(validate(r));
  FREEKV_RETURN_IF_ERROR(reattach_kvstore_if_gone());
  const bool keep = !r.session_id.empty();
  GenerateRequest full = r;
  if (!keep) full.session_id = absl::StrCat(private_prefix_, ++private_sessions_);
  std::vector<int32_t> replay;
  int64_t context_kept = 0;  // prompt_is_context: leading prompt tokens the session already holds
  absl::StatusOr<std::unique_ptr<Sequence>> seq =
      keep ? open_sequence(full.session_id, &replay, r.prompt_is_context ? &r.prompt : nullptr, &context_kept,
                           r.retrieval ? &*r.retrieval : nullptr)
           : new_sequence(full.session_id, /*ephemeral=*/true, r.retrieval ? &*r.retrieval : nullptr);
  if (!seq.ok()) return seq.status();
  full.prompt.erase(full.prompt.begin(), full.prompt.begin() + context_kept);
  // A continued session first replays what its pages do not hold yet.
  full.prompt.insert(full.prompt.begin(), replay.begin(), replay.end());
  if (full.prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt is empty and session '", full.session_id,
                                                   "' holds no tokens to continue from; give a prompt"));
  }
  const int64_t reused = (*seq)->n_tokens();
  if (reused + int64_t(full.prompt.size()) + r.max_tokens > weights_->config.context_limit()) {
    const int64_t held = reused + int64_t(replay.size());
    seq->reset();
    // Best effort: the request is refused whatever closing its private session answers.
    if (!keep) close_sequence_session(full.session_id).IgnoreError();
    return absl::InvalidArgumentError(absl::StrCat("session '", full.session_id, "' holds ", held,
                                                   " tokens; with this prompt and max tokens it would exceed the model's ",
                                                   weights_->config.context_limit(), " positions (",
                                                   weights_->config.context_limit_source(), ")"));
  }
  const int64_t stored_before = (*seq)->kv().stored_tokens();
  auto active = std::make_unique<ActiveRequest>(weights_->config, *tokenizer_, options_.prefill_chunk, std::move(full),
                                                std::move(*seq), std::move(on_text));
  active->private_session = !keep;
  active->set_session_tokens_before(stored_before);
  active->result().stats.reused_tokens = reused;
  active->result().stats.prompt_tokens = int64_t(r.prompt.size()) - context_kept;
  ++started_requests_;
  return active;
}

Engine::Finished Engine::finish_request(std::unique_ptr<ActiveRequest> active, absl::Status failure) {
  --started_requests_;
  const bool keep = !active->private_session;
  const std::string session = active->request().session_id;
  Sequence& seq = active->sequence();
  absl::Status status = seq.drain();
  GenerateResult result = std::move(active->result());
  if (keep && status.ok()) {
    if (failure.ok()) {
      if (!result.tokens.empty()) status = seq.kv().store_pending_token(result.tokens.back());
    } else {
      // Keep what the client was answered: the prompt and every generated token (the last one without
      // KV yet), or, when nothing was generated, what the session held before this turn.
      const int64_t before = active->session_tokens_before();
      const int64_t target = result.tokens.empty()
                                 ? before
                                 : before + result.stats.prompt_tokens + int64_t(result.tokens.size());
      status = seq.kv().truncate_store(std::min(target, seq.kv().stored_tokens()));
      if (status.ok() && seq.kv().stored_tokens() + 1 == target) status = seq.kv().store_pending_token(result.tokens.back());
      if (status.ok() && seq.kv().stored_tokens() != target) {
        status = absl::InternalError(absl::StrCat("session '", session, "' holds ", seq.kv().stored_tokens(),
                                                  " token ids after a failed turn, expected ", target));
      }
    }
  }
  Finished out;
  out.session_tokens = keep ? seq.kv().stored_tokens() : 0;
  backend().release(&seq);
  active.reset();  // local pages back to the pool before the kvstore forgets a private session
  if (!keep) status.Update(close_sequence_session(session));
  if (!failure.ok()) {
    out.result = failure;
  } else if (!status.ok()) {
    out.result = status;
  } else {
    out.result = std::move(result);
  }
  return out;
}

absl::StatusOr<GenerateResult> Engine::generate(const GenerateRequest& r,
                                                const std::function<void(std::string_view)>& on_text) {
  FREEKV_ASSIGN_OR_RETURN(std::unique_ptr<ActiveRequest> active, start_request(r, on_text));
  std::vector<float> logits;
  std::vector<absl::Status> failed;
  while (!active->finished()) {
    absl::Status s = step({active->next_input()}, &logits, &failed);
    if (s.ok()) s = failed[0];
    if (!s.ok()) return finish_request(std::move(active), s).result;
    active->accept(logits.data());
  }
  return finish_request(std::move(active)).result;
}

}  // namespace freekv
