// The single-process engine behind `freekv run`: a model, its tokenizer, a KV pool and threads, and
// the generation loop — chunked prefill of the prompt, then decode until max tokens, an end-of-
// sequence id, a stop id or a stop string.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_pool.h"
#include "worker/engine/active_request.h"
#include "worker/engine/forward.h"
#include "worker/engine/generate_types.h"
#include "worker/engine/sampler.h"
#include "worker/engine/sequence.h"
#include "worker/engine/weights.h"
#include "worker/kv/kv_cache.h"
#include "worker/retrieval/config.h"
#include "worker/chat/chat_template.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

struct EngineOptions;
// Makes the step backend of a device other than the CPU (worker/gpu/device_backend.h); the binaries
// that run on GPUs pass it in, so the engine itself depends on no device library.
using DeviceBackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<StepBackend>>(const ModelWeights&, const EngineOptions&)>;

// Where steps run: "cpu", or "cuda:N" with its KV pool's size. The GPU backend keeps every sequence's
// KV in device memory, in one of `sequences` regions of `tokens_per_sequence` tokens.
struct DeviceOptions {
  std::string name = "cpu";
  int64_t sequences = 8;            // sequences held on the device at once
  int64_t tokens_per_sequence = 0;  // 0 = the model's positions, at most 32768
  uint64_t memory_limit = 0;        // bytes of device memory beside the weights; 0 = what is free
};

struct EngineOptions {
  int threads = 0;                        // 0 = one per hardware thread
  DType kv_dtype = DType::kBF16;          // storage of K/V pages
  int64_t page_tokens = 32;
  int64_t prefill_chunk = 512;            // prompt tokens per prefill step
  uint64_t kv_memory = 16ull << 30;       // bytes of local KV pages across all sequences
  RetrievalConfig retrieval;              // policy and budget
  std::string kvstore_socket;             // freekv-kvstore's unix socket; empty = no offload
  int recall_staging_pairs = 8;           // recalls in flight at once, shared by every sequence and layer
  DeviceOptions device;
  // Serve a model with sliding-window layers past its window, attending the whole context there (a
  // departure from the model); false: requests stop at the window (ModelConfig::context_limit).
  bool attend_beyond_window = false;
  DeviceBackendFactory make_device_backend;  // required when device.name is not "cpu"
};

class Engine {
 public:
  // Loads the model and tokenizer; connects to the kvstore when options.kvstore_socket is set.
  static absl::StatusOr<std::unique_ptr<Engine>> load(const std::string& model_dir, const EngineOptions& options);

  // A new sequence under `retrieval` (nullptr: this engine's policy), bound to kvstore session
  // `session_id` (created) when the engine has a kvstore. close_sequence_session() forgets the session's
  // KV in the kvstore. An ephemeral session belongs to this engine's kvstore attachment and goes when it
  // does (one-off requests).
  absl::StatusOr<std::unique_ptr<Sequence>> new_sequence(const std::string& session_id, bool ephemeral = false,
                                                         const RetrievalConfig* retrieval = nullptr);

  // Continues kvstore session `session_id` (created when missing): its committed pages become the
  // sequence's KV and *replay receives the stored ids past the last committed page (the partial page
  // and the last sampled token), which the caller must feed before anything new. With `context` (the
  // session's whole context, GenerateRequest::prompt_is_context), stored ids past their longest common
  // prefix with it are dropped from the session first, and *kept receives that prefix's length. The
  // sequence runs under `retrieval` (nullptr: this engine's policy).
  absl::StatusOr<std::unique_ptr<Sequence>> open_sequence(const std::string& session_id, std::vector<int32_t>* replay,
                                                          const std::vector<int32_t>* context = nullptr,
                                                          int64_t* kept = nullptr,
                                                          const RetrievalConfig* retrieval = nullptr);
  absl::Status close_sequence_session(const std::string& session_id);
  KvstoreClient* kvstore() { return kvstore_.get(); }
  // A kvstore that restarted (killed, upgraded) keeps its sessions and committed pages, but this
  // engine's attachment ended with the old process. Attaches again once no started request holds the
  // old attachment (those fail with UNAVAILABLE on their next kvstore call), so a worker outlives its
  // kvstore's restarts. UNAVAILABLE, saying to retry, while that is not possible yet. start_request()
  // calls it first.
  absl::Status reattach_kvstore_if_gone();

  // on_text receives text as it becomes final (complete UTF-8, never part of a stop string).
  absl::StatusOr<GenerateResult> generate(const GenerateRequest& request,
                                          const std::function<void(std::string_view)>& on_text);

  // The two ends of generate(), for a step loop that runs several requests together:
  // start_request() validates, opens (or resumes) the request's sequence and returns it ready to step;
  // finish_request() waits for its recalls, settles its kvstore session and returns the result.
  //
  // A kept session that ends well stores the last sampled token (it has no KV yet) for the next turn to
  // replay. One that ends with `failure` (an error, a cancellation) keeps only what its client was
  // given an answer for: its prompt and the tokens generated, if any token was; otherwise it goes back
  // to what it held before the turn. Either way no token is stored twice and none the client never got.
  absl::StatusOr<std::unique_ptr<ActiveRequest>> start_request(const GenerateRequest& request,
                                                              std::function<void(std::string_view)> on_text);
  struct Finished {
    absl::StatusOr<GenerateResult> result;
    int64_t session_tokens = 0;  // token ids the kept session holds afterwards (0 for a private one)
  };
  Finished finish_request(std::unique_ptr<ActiveRequest> request, absl::Status failure = absl::OkStatus());

  // INVALID_ARGUMENT naming the problem: empty prompt, ids outside the vocabulary, max_tokens < 1,
  // prompt + max_tokens beyond the model's positions, bad sampling values, a retrieval override this
  // engine cannot run.
  absl::Status validate(const GenerateRequest& request) const;

  const ModelWeights& weights() const { return *weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The model's chat template (tokenizer_config.json); may be unavailable (a base model).
  const ChatTemplate& chat_template() const { return chat_template_; }
  ThreadPool& threads() { return *threads_; }
  KvBlockPool& kv_pool() { return *kv_pool_; }
  // Where this engine's steps run: the device's backend, or the CPU's forward pass.
  StepBackend& backend() { return device_backend_ != nullptr ? *device_backend_ : *forward_; }
  // StepBackend::step on backend().
  absl::Status step(const std::vector<StepInput>& inputs, std::vector<float>* logits, std::vector<absl::Status>* failed) {
    return backend().step(inputs, logits, failed);
  }
  // The CPU forward pass itself, for what only it offers (query hooks, phase profiles: bench, eval).
  ForwardPass& forward() { return *forward_; }
  const EngineOptions& options() const { return options_; }

 private:
  Engine() = default;
  EngineOptions options_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatTemplate chat_template_;
  std::unique_ptr<ThreadPool> threads_;
  std::unique_ptr<KvBlockPool> kv_pool_;
  std::unique_ptr<ForwardPass> forward_;
  std::unique_ptr<StepBackend> device_backend_;  // null on the CPU
  std::unique_ptr<KvstoreClient> kvstore_;
  std::unique_ptr<RecallQueue> recalls_;
  int64_t started_requests_ = 0;  // start_request()ed and not yet finish_request()ed
  std::vector<int64_t> layer_windows_;  // [n_layers] window each layer's sequences attend (0: whole context)
  uint64_t private_sessions_ = 0;
  std::string private_prefix_;  // "private-<random 64-bit hex>-": unique whatever the host or PID namespace
};

}  // namespace freekv
