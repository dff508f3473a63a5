// The model's weights in GPU memory, each tensor in its stored dtype (bf16, f16 or f32), biases and the
// RoPE frequencies in fp32: uploaded from the host's mapped checkpoint, or drawn at random on the device
// for benchmarks of a model's shape (no checkpoint of that size needs to exist).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "worker/engine/weights.h"
#include "worker/model/config.h"

namespace freekv {

struct DeviceLayerWeights {
  const void* attn_norm = nullptr;                        // [hidden] in dtype
  const void *wq = nullptr, *wk = nullptr, *wv = nullptr;  // [heads·hd | kv·hd, hidden]
  const void* wo = nullptr;                               // [hidden, heads·hd]
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // fp32 biases, null without qkv bias
  const float* bo = nullptr;                              // fp32 [hidden], null without o bias
  const void *q_norm = nullptr, *k_norm = nullptr;        // [hd], null unless Qwen3
  const void* mlp_norm = nullptr;                         // [hidden]
  const void *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;  // [inter, hidden] ×2, [hidden, inter]
};

class DeviceWeights {
 public:
  // Copies every tensor of `host` to the current device. RESOURCE_EXHAUSTED (with the bytes) when
  // they do not fit.
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> upload(const ModelWeights& host);
  // A model of `config`'s shape with uniform random weights (scaled by 1/√fan-in, norms 1), drawn on the
  // device from `seed`: for step-time benchmarks only, its output means nothing.
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> random(const ModelConfig& config, uint64_t seed);

  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;
  ~DeviceWeights();

  const ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }  // every weight's (upload refuses a checkpoint that mixes them)
  const void* embed() const { return embed_; }            // [vocab, hidden]
  const void* final_norm() const { return final_norm_; }  // [hidden]
  const void* lm_head() const { return lm_head_; }        // [vocab, hidden] (the embedding when tied)
  const float* rope_inv_freq() const { return rope_inv_freq_; }  // [hd/2]
  const DeviceLayerWeights& layer(int64_t l) const { return layers_[size_t(l)]; }
  size_t bytes() const { return bytes_; }  // device memory held

 private:
  DeviceWeights(const ModelConfig& config, DType dtype) : config_(config), dtype_(dtype) {}
  // Allocates `bytes` of device memory owned by this object (freed with it).
  absl::StatusOr<void*> allocate(size_t bytes);

  ModelConfig config_;
  DType dtype_;
  std::vector<void*> allocations_;
  size_t bytes_ = 0;
  const void* embed_ = nullptr;
  const void* final_norm_ = nullptr;
  const void* lm_head_ = nullptr;
  const float* rope_inv_freq_ = nullptr;
  std::vector<DeviceLayerWeights> layers_;
};

// Bytes of weights a model of `config` holds on the device (what upload() and random() allocate).
size_t device_weight_bytes(const ModelConfig& config);

}  // namespace freekv
