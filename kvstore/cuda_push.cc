// CUDA push path (see cuda_push.h).
#include "kvstore/cuda_push.h"

#include <cuda_runtime.h>

#include <cstring>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/ops_cuda.h"

namespace freekv::kvstore {

namespace {

// Smallest chunk a staging buffer is cut into (16 tokens × 64 dims × K and V × 2 bytes): sizes the
// per-buffer list of chunk addresses.
constexpr uint64_t kMinChunkBytes = 4096;

class CudaPusher final : public StagingPusher {
 public:
  ~CudaPusher() override {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (device_base_ != nullptr) cudaIpcCloseMemHandle(device_base_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    cudaFreeHost(chunk_lists_);
  }

  absl::Status init(const CudaPushSpec& spec, uint32_t pairs, uint64_t buffer_bytes, const uint8_t* pool,
                    uint64_t pool_bytes) {
    pairs_ = pairs;
    buffer_bytes_ = buffer_bytes;
    pool_ = pool;
    pool_bytes_ = pool_bytes;
    if (spec.staging_handle.size() != sizeof(cudaIpcMemHandle_t)) {
      return absl::InvalidArgumentError(absl::StrCat("cuda_staging_handle must be ", sizeof(cudaIpcMemHandle_t),
                                                     " bytes (a cudaIpcMemHandle_t)"));
    }
    if (spec.event_handles.size() != size_t(pairs) * 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("cuda_event_handles must hold one event per (pair, buffer): ", pairs * 2, " handles"));
    }
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaSetDevice(spec.device), "cudaSetDevice"));
    void* pool_dev = nullptr;
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaHostGetDevicePointer(&pool_dev, const_cast<uint8_t*>(pool), 0),
                                       "the pool is not registered with CUDA as mapped memory (--cuda-register)"));
    pool_dev_ = static_cast<const uint8_t*>(pool_dev);
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
    // One list of chunk addresses per (pair, buffer), in mapped pinned memory the gather kernel reads.
    list_capacity_ = buffer_bytes / kMinChunkBytes;
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaHostAlloc(reinterpret_cast<void**>(&chunk_lists_),
                                                     size_t(pairs) * 2 * list_capacity_ * sizeof(uint8_t*),
                                                     cudaHostAllocMapped | cudaHostAllocPortable),
                                       "cudaHostAlloc(chunk lists)"));
    void* lists_dev = nullptr;
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaHostGetDevicePointer(&lists_dev, chunk_lists_, 0), "cudaHostGetDevicePointer"));
    chunk_lists_dev_ = static_cast<const uint8_t**>(lists_dev);
    return absl::OkStatus();
  }

  absl::Status push_chunks(uint32_t pair, uint32_t buffer, const uint8_t* const* chunks, uint32_t n,
                           uint64_t chunk_bytes) override {
    if (pair >= pairs_ || buffer > 1) return absl::InternalError("push to a staging buffer that does not exist");
    if (uint64_t(n) * chunk_bytes > buffer_bytes_ || n > list_capacity_ || chunk_bytes % 16 != 0) {
      return absl::InternalError(absl::StrCat("push of ", n, " chunks of ", chunk_bytes,
                                              " bytes does not fit a staging buffer of ", buffer_bytes_));
    }
    const size_t slot = size_t(pair) * 2 + buffer;
    const uint8_t** list = chunk_lists_ + slot * list_capacity_;
    for (uint32_t i = 0; i < n; ++i) {
      if (chunks[i] < pool_ || chunks[i] + chunk_bytes > pool_ + pool_bytes_) {
        return absl::InternalError("push of a chunk outside the registered pool");
      }
      list[i] = pool_dev_ + (chunks[i] - pool_);
    }
    uint8_t* dst = device_base_ + slot * buffer_bytes_;
    FREEKV_RETURN_IF_ERROR(cuda_status(
        gather_chunks_cuda(chunk_lists_dev_ + slot * list_capacity_, n, int64_t(chunk_bytes), dst, stream_),
        "gather_chunks_cuda"));
    FREEKV_RETURN_IF_ERROR(cuda_status(cudaEventRecord(events_[slot], stream_), "cudaEventRecord"));
    return cuda_status(cudaEventSynchronize(events_[slot]), "cudaEventSynchronize");
  }

 private:
  uint32_t pairs_ = 0;
  uint64_t buffer_bytes_ = 0;
  const uint8_t* pool_ = nullptr;
  uint64_t pool_bytes_ = 0;
  const uint8_t* pool_dev_ = nullptr;  // the pool as the device addresses it
  cudaStream_t stream_ = nullptr;
  uint8_t* device_base_ = nullptr;
  std::vector<cudaEvent_t> events_;
  const uint8_t** chunk_lists_ = nullptr;  // [pairs][2][list_capacity_], host side
  const uint8_t** chunk_lists_dev_ = nullptr;
  uint64_t list_capacity_ = 0;
};

}  // namespace

bool cuda_push_built() { return true; }

absl::Status cuda_register_host(void* p, uint64_t bytes) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();  // clear the sticky "no device" error
    return absl::UnavailableError("no CUDA device is visible");
  }
  return cuda_status(cudaHostRegister(p, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped),
                     "cudaHostRegister(pool)");
}

void cuda_unregister_host(void* p) { cudaHostUnregister(p); }

absl::StatusOr<std::unique_ptr<StagingPusher>> make_cuda_pusher(const CudaPushSpec& spec, uint32_t staging_pairs,
                                                                uint64_t buffer_bytes, const uint8_t* pool,
                                                                uint64_t pool_bytes) {
  auto p = std::make_unique<CudaPusher>();
  FREEKV_RETURN_IF_ERROR(p->init(spec, staging_pairs, buffer_bytes, pool, pool_bytes));
  return std::unique_ptr<StagingPusher>(std::move(p));
}

}  // namespace freekv::kvstore
