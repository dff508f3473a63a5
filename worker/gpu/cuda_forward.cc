#include "worker/gpu/cuda_forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/ops_cuda.h"

namespace freekv {
namespace {

// The attention workspace the worst step needs: every query count up to max_rows at the longest row.
size_t max_attention_workspace(const ModelConfig& c, const DeviceKvGeometry& g, int64_t max_rows, int sms) {
  size_t most = 0;
  for (int64_t n_q = 1; n_q <= max_rows; ++n_q) {
    const AttentionSplits s = attention_splits(n_q * g.page.n_kv_heads, g.max_pages, sms);
    most = std::max(most, attention_workspace_bytes(n_q, c.n_heads, c.head_dim, s.n_splits));
  }
  return most;
}

// int32 elements of the packed step plan at most: ids, positions, query_seq, visible, write_token
// [rows] each, write_chunk [rows, n_kv], indptr, indices and last_len over every slot.
size_t plan_capacity(const DeviceKvGeometry& g, int64_t max_rows) {
  return size_t(5 * max_rows + max_rows * g.page.n_kv_heads + g.slots * g.page.n_kv_heads * (g.max_pages + 2) + 1);
}

}  // namespace

CudaForwardPass::CudaForwardPass(const DeviceWeights& weights, const CudaForwardOptions& options)
    : w_(weights), options_(options) {
  const ModelConfig& c = weights.config();
  geometry_.page.n_layers = c.n_layers;
  geometry_.page.n_kv_heads = c.n_kv_heads;
  geometry_.page.head_dim = c.head_dim;
  geometry_.page.page_tokens = options.page_tokens;
  geometry_.page.dtype = options.kv_dtype;
  geometry_.slots = options.slots;
  geometry_.max_pages = (options.max_tokens_per_slot + options.page_tokens - 1) / options.page_tokens;
  slot_tokens_.assign(size_t(options.slots), 0);
}

CudaForwardPass::~CudaForwardPass() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (matmul_ != nullptr) matmul_context_destroy(matmul_);
  for (void* p : allocations_) cudaFree(p);
  cudaFreeHost(plan_host_);
  cudaFreeHost(logits_host_);
  cudaFreeHost(ids_host_);
  if (step_begin_ != nullptr) cudaEventDestroy(step_begin_);
  if (step_end_ != nullptr) cudaEventDestroy(step_end_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::StatusOr<std::unique_ptr<CudaForwardPass>> CudaForwardPass::create(const DeviceWeights& weights,
                                                                         const CudaForwardOptions& options) {
  if (options.slots < 1 || options.max_tokens_per_slot < 1 || options.page_tokens < 1 || options.max_step_rows < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU forward pass: slots (", options.slots, "), tokens per slot (", options.max_tokens_per_slot,
        "), page tokens (", options.page_tokens, ") and step rows (", options.max_step_rows, ") must all be ≥ 1"));
  }
  std::unique_ptr<CudaForwardPass> pass(new CudaForwardPass(weights, options));
  FREEKV_RETURN_IF_ERROR(pass->allocate());
  return pass;
}

absl::Status CudaForwardPass::allocate() {
  const ModelConfig& c = w_.config();
  const int64_t rows = options_.max_step_rows, h = c.hidden, q_dim = int64_t(c.n_heads) * c.head_dim,
                kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  int device = 0;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaGetDevice(&device), "cudaGetDevice"));
  FREEKV_RETURN_IF_ERROR(cuda_status(
      cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute"));
  attention_workspace_bytes_ = max_attention_workspace(c, geometry_, rows, multiprocessors_);
  plan_capacity_ = plan_capacity(geometry_, rows);
  const size_t kv_bytes = size_t(geometry_.page.n_layers * geometry_.layer_bytes());
  const size_t activation_bytes = size_t(rows * (3 * h + 2 * q_dim + 2 * kv_dim + 2 * c.intermediate + c.vocab)) * 4;
  const size_t wanted = kv_bytes + activation_bytes + attention_workspace_bytes_ + plan_capacity_ * 4 + size_t(rows) * 4;
  size_t free_bytes = 0, total_bytes = 0;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  const size_t allowed = options_.memory_limit > 0 ? std::min<size_t>(options_.memory_limit, free_bytes) : free_bytes;
  if (wanted > allowed) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "GPU memory: the KV pool (", geometry_.slots, " sequences × ", geometry_.max_tokens(), " tokens: ", kv_bytes,
        " bytes) and activations (", activation_bytes + attention_workspace_bytes_, " bytes) need ", wanted,
        " bytes beside the weights (", w_.bytes(), "); ", allowed, " are allowed (", free_bytes,
        " free on the device", options_.memory_limit > 0 ? absl::StrCat(", limit ", options_.memory_limit) : "",
        "): lower the sequences, the tokens per sequence or the step rows"));
  }
  auto alloc = [&](size_t bytes, void** out) -> absl::Status {
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaMalloc(out, std::max<size_t>(bytes, 16)), "cudaMalloc"));
    allocations_.push_back(*out);
    device_bytes_ += bytes;
    return absl::OkStatus();
  };
  auto alloc_f32 = [&](int64_t width, float** out) {
    void* p = nullptr;
    absl::Status s = alloc(size_t(rows * width) * 4, &p);
    *out = static_cast<float*>(p);
    return s;
  };
  kv_layers_.resize(size_t(geometry_.page.n_layers));
  for (uint8_t*& layer : kv_layers_) {
    void* p = nullptr;
    FREEKV_RETURN_IF_ERROR(alloc(size_t(geometry_.layer_bytes()), &p));
    layer = static_cast<uint8_t*>(p);
  }
  FREEKV_RETURN_IF_ERROR(alloc_f32(h, &x_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(h, &xn_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(q_dim, &q_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(kv_dim, &k_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(kv_dim, &v_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(q_dim, &attn_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(c.intermediate, &gate_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(c.intermediate, &up_));
  FREEKV_RETURN_IF_ERROR(alloc_f32(c.vocab, &logits_));
  FREEKV_RETURN_IF_ERROR(alloc(attention_workspace_bytes_, &attention_workspace_));
  void* p = nullptr;
  FREEKV_RETURN_IF_ERROR(alloc(plan_capacity_ * 4, &p));
  plan_device_ = static_cast<int32_t*>(p);
  FREEKV_RETURN_IF_ERROR(alloc(size_t(rows) * 4, &p));
  ids_device_ = static_cast<int32_t*>(p);
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaMallocHost(&ids_host_, size_t(rows) * 4), "cudaMallocHost"));
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaMallocHost(&plan_host_, plan_capacity_ * 4), "cudaMallocHost"));
  FREEKV_RETURN_IF_ERROR(
      cuda_status(cudaMallocHost(&logits_host_, size_t(rows * c.vocab) * 4), "cudaMallocHost"));
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaEventCreate(&step_begin_), "cudaEventCreate"));
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaEventCreate(&step_end_), "cudaEventCreate"));
  return cuda_status(matmul_context_create(&matmul_, stream_), "matmul_context_create");
}

absl::Status CudaForwardPass::run_layers(const std::vector<CudaStepInput>& inputs, int64_t* out_rows) {
  step_started_ = std::chrono::steady_clock::now();
  const ModelConfig& c = w_.config();
  const int64_t h = c.hidden, hd = c.head_dim, q_dim = int64_t(c.n_heads) * hd, kv_dim = int64_t(c.n_kv_heads) * hd,
                inter = c.intermediate;
  int64_t rows = 0;
  std::vector<DeviceStepInput> kv_inputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const CudaStepInput& in = inputs[i];
    for (int64_t t = 0; t < in.n_tokens; ++t) {
      if (in.tokens[t] < 0 || in.tokens[t] >= c.vocab) {
        return absl::InvalidArgumentError(absl::StrCat("step input ", i, ": token ", t, " is id ", in.tokens[t],
                                                       ", outside the model's vocabulary of ", c.vocab));
      }
    }
    if (in.slot < 0 || in.slot >= geometry_.slots) {
      return absl::InvalidArgumentError(
          absl::StrCat("step input ", i, ": slot ", in.slot, " is outside the ", geometry_.slots, " slots"));
    }
    kv_inputs.push_back(DeviceStepInput{in.slot, slot_tokens_[size_t(in.slot)], in.n_tokens});
    rows += in.n_tokens;
  }
  if (rows > options_.max_step_rows) {
    return absl::InvalidArgumentError(absl::StrCat("a step of ", rows, " tokens exceeds the GPU pass's ",
                                                   options_.max_step_rows, " rows per step; split the prefill"));
  }
  FREEKV_RETURN_IF_ERROR(plan_device_step(geometry_, kv_inputs, &plan_));

  // One upload of every int32 array of the step, packed in this order.
  int32_t* packed = plan_host_;
  auto pack = [&](const int32_t* src, size_t n) {
    int32_t* at = plan_device_ + (packed - plan_host_);
    std::memcpy(packed, src, n * 4);
    packed += n;
    return at;
  };
  int32_t* ids = plan_device_;
  for (const CudaStepInput& in : inputs) pack(in.tokens, size_t(in.n_tokens));
  const int32_t* positions = pack(plan_.positions.data(), plan_.positions.size());
  const int32_t* query_seq = pack(plan_.query_seq.data(), plan_.query_seq.size());
  const int32_t* visible = pack(plan_.visible.data(), plan_.visible.size());
  const int32_t* indptr = pack(plan_.indptr.data(), plan_.indptr.size());
  const int32_t* indices = pack(plan_.indices.data(), plan_.indices.size());
  const int32_t* last_len = pack(plan_.last_len.data(), plan_.last_len.size());
  const int32_t* write_chunk = pack(plan_.write_chunk.data(), plan_.write_chunk.size());
  const int32_t* write_token = pack(plan_.write_token.data(), plan_.write_token.size());
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaEventRecord(step_begin_, stream_), "cudaEventRecord"));
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaMemcpyAsync(plan_device_, plan_host_, size_t(packed - plan_host_) * 4,
                                                     cudaMemcpyHostToDevice, stream_),
                                     "step plan upload"));

  const AttentionSplits splits = attention_splits(rows * c.n_kv_heads, plan_.max_chunks, multiprocessors_);
  if (attention_workspace_bytes(rows, c.n_heads, hd, splits.n_splits) > attention_workspace_bytes_) {
    return absl::InternalError(absl::StrCat("GPU forward pass: attention over ", rows, " queries in ", splits.n_splits,
                                            " splits needs more workspace than was sized at start"));
  }
  AttentionQueries queries;
  queries.q = q_;
  queries.seq = query_seq;
  queries.visible = visible;
  queries.n_q = rows;
  queries.n_heads = c.n_heads;
  PagedKvCuda kv;
  kv.indptr = indptr;
  kv.indices = indices;
  kv.last_len = last_len;
  kv.page_tokens = geometry_.page.page_tokens;
  kv.head_dim = hd;
  kv.n_kv_heads = c.n_kv_heads;
  kv.dtype = geometry_.page.dtype;
  const float eps = float(c.rms_eps), scale = 1.f / std::sqrt(float(hd));
  const DType wt = w_.dtype();

  // Each launch with its name, so that a failure says which op failed.
  struct Launch {
    const char* op;
    cudaError_t error;
  };
  auto first_failure = [](std::initializer_list<Launch> launches) -> absl::Status {
    for (const Launch& l : launches) FREEKV_RETURN_IF_ERROR(cuda_status(l.error, l.op));
    return absl::OkStatus();
  };
  FREEKV_RETURN_IF_ERROR(first_failure({{"embedding", embedding_cuda(w_.embed(), wt, ids, rows, h, x_, stream_)}}));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const DeviceLayerWeights& L = w_.layer(l);
    kv.pool = kv_layers_[size_t(l)];
    absl::Status s = first_failure({
        {"attention norm", rmsnorm_cuda(x_, L.attn_norm, wt, eps, xn_, rows, h, stream_)},
        {"q projection", matmul_cuda(matmul_, xn_, L.wq, wt, L.bq, q_, rows, h, q_dim)},
        {"k projection", matmul_cuda(matmul_, xn_, L.wk, wt, L.bk, k_, rows, h, kv_dim)},
        {"v projection", matmul_cuda(matmul_, xn_, L.wv, wt, L.bv, v_, rows, h, kv_dim)},
        {"q norm", L.q_norm != nullptr ? rmsnorm_cuda(q_, L.q_norm, wt, eps, q_, rows * c.n_heads, hd, stream_)
                                       : cudaSuccess},
        {"k norm", L.k_norm != nullptr ? rmsnorm_cuda(k_, L.k_norm, wt, eps, k_, rows * c.n_kv_heads, hd, stream_)
                                       : cudaSuccess},
        {"q RoPE", rope_apply_cuda(q_, positions, w_.rope_inv_freq(), rows, c.n_heads, hd, stream_)},
        {"k RoPE", rope_apply_cuda(k_, positions, w_.rope_inv_freq(), rows, c.n_kv_heads, hd, stream_)},
        {"K/V write", write_kv_cuda(kv_layers_[size_t(l)], geometry_.page.dtype, k_, v_, write_chunk, write_token, rows,
                                    c.n_kv_heads, geometry_.page.page_tokens, hd, stream_)},
        {"attention", attention_paged_cuda(queries, kv, scale, splits.n_splits, splits.chunks_per_split,
                                           attention_workspace_, attn_, stream_)},
        {"o projection", matmul_cuda(matmul_, attn_, L.wo, wt, L.bo, xn_, rows, q_dim, h)},
        {"residual add", add_inplace_cuda(x_, xn_, rows * h, stream_)},
        {"MLP norm", rmsnorm_cuda(x_, L.mlp_norm, wt, eps, xn_, rows, h, stream_)},
        {"gate projection", matmul_cuda(matmul_, xn_, L.w_gate, wt, nullptr, gate_, rows, h, inter)},
        {"up projection", matmul_cuda(matmul_, xn_, L.w_up, wt, nullptr, up_, rows, h, inter)},
        {"SwiGLU", swiglu_cuda(gate_, up_, gate_, rows * inter, stream_)},
        {"down projection", matmul_cuda(matmul_, gate_, L.w_down, wt, nullptr, xn_, rows, inter, h)},
        {"residual add", add_inplace_cuda(x_, xn_, rows * h, stream_)},
    });
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("GPU forward pass, layer ", l, ", ", s.message()));
  }

  // The rows that get logits, gathered into xn_ and normed there.
  int64_t r = 0, out = 0;
  for (const CudaStepInput& in : inputs) {
    const int64_t first = in.all_logits ? r : r + in.n_tokens - 1, n = in.all_logits ? in.n_tokens : 1;
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaMemcpyAsync(xn_ + out * h, x_ + first * h, size_t(n * h) * 4,
                                                       cudaMemcpyDeviceToDevice, stream_),
                                       "logit rows gather"));
    out += n;
    r += in.n_tokens;
  }
  FREEKV_RETURN_IF_ERROR(cuda_status(rmsnorm_cuda(xn_, w_.final_norm(), wt, eps, xn_, out, h, stream_), "final norm"));
  FREEKV_RETURN_IF_ERROR(cuda_status(matmul_cuda(matmul_, xn_, w_.lm_head(), wt, nullptr, logits_, out, h, c.vocab),
                                     "LM head"));
  *out_rows = out;
  return absl::OkStatus();
}

absl::Status CudaForwardPass::finish_step(const std::vector<CudaStepInput>& inputs) {
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaEventRecord(step_end_, stream_), "cudaEventRecord"));
  const double issue_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - step_started_).count();
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream_), "GPU forward pass"));
  float ms = 0;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaEventElapsedTime(&ms, step_begin_, step_end_), "cudaEventElapsedTime"));
  last_timing_ = StepTiming{ms, issue_ms};
  for (const CudaStepInput& in : inputs) slot_tokens_[size_t(in.slot)] += in.n_tokens;
  return absl::OkStatus();
}

absl::Status CudaForwardPass::step(const std::vector<CudaStepInput>& inputs, std::vector<float>* logits) {
  int64_t out_rows = 0;
  FREEKV_RETURN_IF_ERROR(run_layers(inputs, &out_rows));
  const size_t n = size_t(out_rows * w_.config().vocab);
  FREEKV_RETURN_IF_ERROR(cuda_status(
      cudaMemcpyAsync(logits_host_, logits_, n * 4, cudaMemcpyDeviceToHost, stream_), "logits download"));
  FREEKV_RETURN_IF_ERROR(finish_step(inputs));
  logits->assign(logits_host_, logits_host_ + n);
  return absl::OkStatus();
}

absl::Status CudaForwardPass::step_greedy(const std::vector<CudaStepInput>& inputs, std::vector<int32_t>* ids) {
  std::vector<CudaStepInput> last_only = inputs;
  for (CudaStepInput& in : last_only) in.all_logits = false;
  int64_t out_rows = 0;
  FREEKV_RETURN_IF_ERROR(run_layers(last_only, &out_rows));
  FREEKV_RETURN_IF_ERROR(
      cuda_status(argmax_cuda(logits_, out_rows, w_.config().vocab, ids_device_, stream_), "greedy sampling"));
  FREEKV_RETURN_IF_ERROR(cuda_status(
      cudaMemcpyAsync(ids_host_, ids_device_, size_t(out_rows) * 4, cudaMemcpyDeviceToHost, stream_), "ids download"));
  FREEKV_RETURN_IF_ERROR(finish_step(inputs));
  ids->assign(ids_host_, ids_host_ + out_rows);
  return absl::OkStatus();
}

absl::Status CudaForwardPass::synthesize_kv(int64_t slot, int64_t n_tokens, uint64_t seed) {
  if (slot < 0 || slot >= geometry_.slots || n_tokens < 0 || n_tokens > geometry_.max_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat("synthesize_kv: slot ", slot, " with ", n_tokens,
                                                   " tokens does not fit the pool (", geometry_.slots, " slots of ",
                                                   geometry_.max_tokens(), " tokens)"));
  }
  const int64_t elems = geometry_.layer_bytes() / int64_t(dtype_size(geometry_.page.dtype));
  for (size_t l = 0; l < kv_layers_.size(); ++l) {
    FREEKV_RETURN_IF_ERROR(cuda_status(
        fill_uniform_cuda(kv_layers_[l], geometry_.page.dtype, elems, seed + l, -1.f, 1.f, stream_), "KV fill"));
  }
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream_), "KV fill"));
  slot_tokens_[size_t(slot)] = n_tokens;
  return absl::OkStatus();
}

}  // namespace freekv
