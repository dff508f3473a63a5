#include "worker/gpu/device_weights.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/ops_cuda.h"

namespace freekv {
namespace {

// One tensor the device holds: its element count and type, the fan-in that scales its random values
// (0: a norm weight, all ones), where its host copy is (when uploading), and whether it is one of the
// fp32 copies the host side makes (biases, RoPE frequencies) rather than a checkpoint weight.
struct TensorDesc {
  int64_t elems = 0;
  DType dtype = DType::kBF16;
  int64_t fan_in = 0;
  const void* host = nullptr;
  bool fp32_copy = false;
};

// Calls place(desc, &pointer) for every tensor of the model in one fixed order, filling `weights`'
// pointers; `host` (may be null) gives each desc its host copy. Tied embeddings share one tensor.
template <typename Place>
absl::Status for_each_tensor(const ModelConfig& c, const ModelWeights* host, Place place, const void** embed,
                             const void** final_norm, const void** lm_head, std::vector<DeviceLayerWeights>* layers) {
  const int64_t h = c.hidden, hd = c.head_dim, q_dim = int64_t(c.n_heads) * hd, kv_dim = int64_t(c.n_kv_heads) * hd,
                inter = c.intermediate;
  const DType w = host != nullptr ? host->embed.dtype : c.dtype;
  auto matrix = [&](int64_t rows, int64_t cols, const WeightRef* ref, const void** out) {
    return place(TensorDesc{rows * cols, ref != nullptr ? ref->dtype : w, cols, ref != nullptr ? ref->data : nullptr},
                 out);
  };
  auto norm = [&](int64_t n, const WeightRef* ref, const void** out) {
    return place(TensorDesc{n, ref != nullptr ? ref->dtype : w, 0, ref != nullptr ? ref->data : nullptr}, out);
  };
  auto bias = [&](int64_t n, const std::vector<float>* ref, const float** out) {
    const void* p = nullptr;
    absl::Status s = place(TensorDesc{n, DType::kF32, n, ref != nullptr ? ref->data() : nullptr, true}, &p);
    *out = static_cast<const float*>(p);
    return s;
  };
  FREEKV_RETURN_IF_ERROR(matrix(c.vocab, h, host ? &host->embed : nullptr, embed));
  FREEKV_RETURN_IF_ERROR(norm(h, host ? &host->final_norm : nullptr, final_norm));
  if (host != nullptr ? host->lm_head.data == host->embed.data : c.tie_embeddings) {
    *lm_head = *embed;
  } else {
    FREEKV_RETURN_IF_ERROR(matrix(c.vocab, h, host ? &host->lm_head : nullptr, lm_head));
  }
  layers->assign(size_t(c.n_layers), DeviceLayerWeights{});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    DeviceLayerWeights& d = (*layers)[size_t(l)];
    const LayerWeights* L = host ? &host->layers[size_t(l)] : nullptr;
    FREEKV_RETURN_IF_ERROR(norm(h, L ? &L->attn_norm : nullptr, &d.attn_norm));
    FREEKV_RETURN_IF_ERROR(matrix(q_dim, h, L ? &L->wq : nullptr, &d.wq));
    FREEKV_RETURN_IF_ERROR(matrix(kv_dim, h, L ? &L->wk : nullptr, &d.wk));
    FREEKV_RETURN_IF_ERROR(matrix(kv_dim, h, L ? &L->wv : nullptr, &d.wv));
    FREEKV_RETURN_IF_ERROR(matrix(h, q_dim, L ? &L->wo : nullptr, &d.wo));
    if (c.qkv_bias) {
      FREEKV_RETURN_IF_ERROR(bias(q_dim, L ? &L->bq : nullptr, &d.bq));
      FREEKV_RETURN_IF_ERROR(bias(kv_dim, L ? &L->bk : nullptr, &d.bk));
      FREEKV_RETURN_IF_ERROR(bias(kv_dim, L ? &L->bv : nullptr, &d.bv));
    }
    if (c.o_bias) FREEKV_RETURN_IF_ERROR(bias(h, L ? &L->bo : nullptr, &d.bo));
    if (c.qk_norm) {
      FREEKV_RETURN_IF_ERROR(norm(hd, L ? &L->q_norm : nullptr, &d.q_norm));
      FREEKV_RETURN_IF_ERROR(norm(hd, L ? &L->k_norm : nullptr, &d.k_norm));
    }
    FREEKV_RETURN_IF_ERROR(norm(h, L ? &L->mlp_norm : nullptr, &d.mlp_norm));
    FREEKV_RETURN_IF_ERROR(matrix(inter, h, L ? &L->w_gate : nullptr, &d.w_gate));
    FREEKV_RETURN_IF_ERROR(matrix(inter, h, L ? &L->w_up : nullptr, &d.w_up));
    FREEKV_RETURN_IF_ERROR(matrix(h, inter, L ? &L->w_down : nullptr, &d.w_down));
  }
  return absl::OkStatus();
}

size_t desc_bytes(const TensorDesc& d) { return size_t(d.elems) * dtype_size(d.dtype); }

}  // namespace

size_t device_weight_bytes(const ModelConfig& config) {
  size_t total = size_t(config.head_dim / 2) * sizeof(float);  // RoPE frequencies
  const void* sink = nullptr;
  std::vector<DeviceLayerWeights> layers;
  absl::Status s = for_each_tensor(
      config, nullptr,
      [&](const TensorDesc& d, const void** out) {
        total += desc_bytes(d);
        *out = nullptr;
        return absl::OkStatus();
      },
      &sink, &sink, &sink, &layers);
  (void)s;  // the counting callback never fails
  return total;
}

DeviceWeights::~DeviceWeights() {
  for (void* p : allocations_) cudaFree(p);
}

absl::StatusOr<void*> DeviceWeights::allocate(size_t bytes) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it: an allocation failure is not sticky
    return absl::ResourceExhaustedError(absl::StrCat("GPU memory: the model's weights need ",
                                                     device_weight_bytes(config_), " bytes; allocating ", bytes,
                                                     " more after ", bytes_, " failed (", cudaGetErrorString(e), ")"));
  }
  allocations_.push_back(p);
  bytes_ += bytes;
  return p;
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::upload(const ModelWeights& host) {
  std::unique_ptr<DeviceWeights> dw(new DeviceWeights(host.config, host.embed.dtype));
  auto place = [&](const TensorDesc& d, const void** out) -> absl::Status {
    // The kernels take one weight type per model.
    if (!d.fp32_copy && d.dtype != dw->dtype_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the GPU forward pass needs every weight in one type; ", host.dir, " mixes ", std::string(dtype_name(dw->dtype_)),
          " (the embedding) with ", std::string(dtype_name(d.dtype)), ": convert the checkpoint to one dtype"));
    }
    FREEKV_ASSIGN_OR_RETURN(void* p, dw->allocate(desc_bytes(d)));
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaMemcpy(p, d.host, desc_bytes(d), cudaMemcpyHostToDevice), "weight upload"));
    *out = p;
    return absl::OkStatus();
  };
  FREEKV_RETURN_IF_ERROR(
      for_each_tensor(host.config, &host, place, &dw->embed_, &dw->final_norm_, &dw->lm_head_, &dw->layers_));
  const void* inv_freq = nullptr;
  FREEKV_RETURN_IF_ERROR(place(TensorDesc{int64_t(host.rope_inv_freq.size()), DType::kF32, 0,
                                          host.rope_inv_freq.data(), true},
                               &inv_freq));
  dw->rope_inv_freq_ = static_cast<const float*>(inv_freq);
  return dw;
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::random(const ModelConfig& config, uint64_t seed) {
  std::unique_ptr<DeviceWeights> dw(new DeviceWeights(config, config.dtype));
  uint64_t tensor = 0;
  auto place = [&](const TensorDesc& d, const void** out) -> absl::Status {
    FREEKV_ASSIGN_OR_RETURN(void* p, dw->allocate(desc_bytes(d)));
    // Uniform with standard deviation 1/√fan-in; norm weights are ones.
    const float a = d.fan_in > 0 ? std::sqrt(3.f / float(d.fan_in)) : 0.f;
    const float lo = d.fan_in > 0 ? -a : 1.f, hi = d.fan_in > 0 ? a : 1.f;
    FREEKV_RETURN_IF_ERROR(
        cuda_status(fill_uniform_cuda(p, d.dtype, d.elems, seed + 0x1000 * ++tensor, lo, hi, nullptr), "weight fill"));
    *out = p;
    return absl::OkStatus();
  };
  FREEKV_RETURN_IF_ERROR(
      for_each_tensor(config, nullptr, place, &dw->embed_, &dw->final_norm_, &dw->lm_head_, &dw->layers_));
  const std::vector<float> inv = rope_inverse_frequencies(config);
  FREEKV_ASSIGN_OR_RETURN(void* p, dw->allocate(inv.size() * sizeof(float)));
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaMemcpy(p, inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice),
                                     "RoPE frequencies upload"));
  dw->rope_inv_freq_ = static_cast<const float*>(p);
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaDeviceSynchronize(), "weight fill"));
  return dw;
}

}  // namespace freekv
