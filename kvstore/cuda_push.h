// Moving filled host staging buffers to a worker's GPU (CUDA builds only).
//
// UNTESTED: this path compiles wherever the CUDA toolkit is present, but it has not run on a GPU yet; a
// later issue validates it on one. On CPU builds (and when a worker attaches without CUDA handles) the
// staging buffers in the channel segment are themselves what the worker reads, and none of this runs.
//
// With CUDA, a worker attaching its data-plane channel passes a cudaIpcMemHandle_t of a device staging
// area [staging_pairs][2][staging_buffer_bytes] and one interprocess event per (pair, buffer). The
// gather thread fills host staging buffer (p, b) as usual, then push() queues an async H2D copy into
// device buffer (p, b) on the pusher's stream and records event (p, b) after it; the handover
// completion follows, and the worker makes its compute stream wait on event (p, b) before reading the
// device buffer. Each buffer has its own event, and the kvstore refills a buffer only after the worker
// released it, so a wait can never be satisfied by an older record. before_fill() waits for the
// previous copy out of host buffer (p, b) before the gather overwrites it, which keeps the gather
// into one buffer overlapping the copy of the other (double buffering).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace freekv::kvstore {

struct CudaPushSpec {
  std::string staging_handle;              // cudaIpcMemHandle_t bytes
  std::vector<std::string> event_handles;  // cudaIpcEventHandle_t bytes, [pair][buffer]
  int device = 0;
};

class StagingPusher {
 public:
  virtual ~StagingPusher() = default;
  virtual absl::Status before_fill(uint32_t pair, uint32_t buffer) = 0;
  virtual absl::Status push(uint32_t pair, uint32_t buffer, const uint8_t* host, uint64_t bytes) = 0;
};

// True when this build has the CUDA push path.
bool cuda_push_built();

// Pins host memory for DMA (cudaHostRegister, portable). UNIMPLEMENTED without CUDA, UNAVAILABLE when no
// device is usable.
absl::Status cuda_register_host(void* p, uint64_t bytes);
void cuda_unregister_host(void* p);

// Opens the worker's device staging area and events; registers `host_staging` (the channel's staging
// region of the same shape) for async copies.
absl::StatusOr<std::unique_ptr<StagingPusher>> make_cuda_pusher(const CudaPushSpec& spec, uint8_t* host_staging,
                                                                uint32_t staging_pairs, uint64_t buffer_bytes);

}  // namespace freekv::kvstore
