// Device staging for CUDA recalls (see device_staging.h).
#include "worker/kv/device_staging.h"

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_status.h"

namespace freekv {

absl::StatusOr<std::unique_ptr<DeviceStaging>> DeviceStaging::create(int device, uint32_t pairs, uint64_t buffer_bytes) {
  std::unique_ptr<DeviceStaging> s(new DeviceStaging());
  s->device_ = device;
  s->buffer_bytes_ = buffer_bytes;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  void* base = nullptr;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaMalloc(&base, uint64_t(pairs) * 2 * buffer_bytes), "cudaMalloc(staging)"));
  s->base_ = static_cast<uint8_t*>(base);
  cudaIpcMemHandle_t mh;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaIpcGetMemHandle(&mh, base), "cudaIpcGetMemHandle"));
  s->memory_handle_.assign(reinterpret_cast<const char*>(&mh), sizeof(mh));
  for (uint32_t i = 0; i < pairs * 2; ++i) {
    cudaEvent_t ev = nullptr;
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&ev, cudaEventInterprocess | cudaEventDisableTiming),
                                       "cudaEventCreate(interprocess)"));
    s->events_.push_back(ev);
    cudaIpcEventHandle_t eh;
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaIpcGetEventHandle(&eh, ev), "cudaIpcGetEventHandle"));
    s->event_handles_.emplace_back(reinterpret_cast<const char*>(&eh), sizeof(eh));
  }
  return s;
}

DeviceStaging::~DeviceStaging() {
  for (void* e : events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  cudaFree(base_);
}

}  // namespace freekv
