// CUDA push path (see cuda_push.h). UNTESTED on a GPU: compiled only, validated by a later issue.
#include "kvstore/cuda_push.h"

#include <cuda_runtime.h>

#include <cstring>

namespace freekv::kvstore {

namespace {

absl::Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}

class CudaPusher final : public StagingPusher {
 public:
  ~CudaPusher() override {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (device_base_ != nullptr) cudaIpcCloseMemHandle(device_base_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (host_registered_ != nullptr) cudaHostUnregister(host_registered_);
  }

  absl::Status init(const CudaPushSpec& spec, uint8_t* host_staging, uint32_t pairs, uint64_t buffer_bytes) {
    pairs_ = pairs;
    buffer_bytes_ = buffer_bytes;
    if (spec.staging_handle.size() != sizeof(cudaIpcMemHandle_t)) {
      return absl::InvalidArgumentError(absl::StrCat("cuda_staging_handle must be ", sizeof(cudaIpcMemHandle_t),
                                                     " bytes (a cudaIpcMemHandle_t)"));
    }
    if (spec.event_handles.size() != size_t(pairs) * 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("cuda_event_handles must hold one event per (pair, buffer): ", pairs * 2, " handles"));
    }
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaSetDevice(spec.device), "cudaSetDevice"));
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
    cudaIpcMemHandle_t mh;
    std::memcpy(&mh, spec.staging_handle.data(), sizeof(mh));
    void* dev = nullptr;
    FREEKV_RETURN_IF_ERROR(
        cuda_status(cudaIpcOpenMemHandle(&dev, mh, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle"));
    device_base_ = static_cast<uint8_t*>(dev);
    for (const std::string& h : spec.event_handles) {
      if (h.size() != sizeof(cudaIpcEventHandle_t)) {
        return absl::InvalidArgumentError(absl::StrCat("each cuda event handle must be ", sizeof(cudaIpcEventHandle_t),
                                                       " bytes (a cudaIpcEventHandle_t)"));
      }
      cudaIpcEventHandle_t eh;
      std::memcpy(&eh, h.data(), sizeof(eh));
      cudaEvent_t ev = nullptr;
      FREEKV_RETURN_IF_ERROR(cuda_status(cudaIpcOpenEventHandle(&ev, eh), "cudaIpcOpenEventHandle"));
      events_.push_back(ev);
    }
    const uint64_t host_bytes = uint64_t(pairs) * 2 * buffer_bytes;
    FREEKV_RETURN_IF_ERROR(
        cuda_status(cudaHostRegister(host_staging, host_bytes, cudaHostRegisterPortable), "cudaHostRegister(staging)"));
    host_registered_ = host_staging;
    return absl::OkStatus();
  }

  absl::Status before_fill(uint32_t pair, uint32_t buffer) override {
    return cuda_status(cudaEventSynchronize(events_[pair * 2 + buffer]), "cudaEventSynchronize");
  }

  absl::Status push(uint32_t pair, uint32_t buffer, const uint8_t* host, uint64_t bytes) override {
    if (bytes > buffer_bytes_) return absl::InternalError("push larger than a staging buffer");
    uint8_t* dst = device_base_ + (uint64_t(pair) * 2 + buffer) * buffer_bytes_;
    FREEKV_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync"));
    return cuda_status(cudaEventRecord(events_[pair * 2 + buffer], stream_), "cudaEventRecord");
  }

 private:
  uint32_t pairs_ = 0;
  uint64_t buffer_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  uint8_t* device_base_ = nullptr;
  std::vector<cudaEvent_t> events_;
  void* host_registered_ = nullptr;
};

}  // namespace

bool cuda_push_built() { return true; }

absl::Status cuda_register_host(void* p, uint64_t bytes) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();  // clear the sticky "no device" error
    return absl::UnavailableError("no CUDA device is visible");
  }
  return cuda_status(cudaHostRegister(p, bytes, cudaHostRegisterPortable), "cudaHostRegister(pool)");
}

void cuda_unregister_host(void* p) { cudaHostUnregister(p); }

absl::StatusOr<std::unique_ptr<StagingPusher>> make_cuda_pusher(const CudaPushSpec& spec, uint8_t* host_staging,
                                                                uint32_t staging_pairs, uint64_t buffer_bytes) {
  auto p = std::make_unique<CudaPusher>();
  FREEKV_RETURN_IF_ERROR(p->init(spec, host_staging, staging_pairs, buffer_bytes));
  return std::unique_ptr<StagingPusher>(std::move(p));
}

}  // namespace freekv::kvstore
