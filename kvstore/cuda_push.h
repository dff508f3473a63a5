// Moving recalled chunks to a worker's GPU (CUDA builds only).
//
// With CUDA, a worker attaching its data-plane channel passes a cudaIpcMemHandle_t of a device staging
// area [staging_pairs][2][staging_buffer_bytes] and one interprocess event per (pair, buffer). The
// kvstore's pool is registered with CUDA as mapped memory (freekv-kvstore --cuda-register), so for
// each staging buffer the gather thread hands the chunks' pool addresses to push_chunks(), which
// gathers them into device buffer (pair, buffer) with one kernel that reads the pool over PCIe (for
// scattered 16 KiB chunks this runs near the contiguous copy rate; a cudaMemcpyAsync per chunk reaches
// about a tenth of it), records event (pair, buffer) and waits for it, so the pool lock the caller
// holds covers the reads. The handover completion follows, and the worker makes its compute stream
// wait on event (pair, buffer) before reading the device buffer; each buffer has its own event and is
// refilled only after the worker released it, so a wait is never satisfied by an older record.
//
// On CPU builds (and when a worker attaches without CUDA handles) the staging buffers in the channel
// segment are themselves what the worker reads, and none of this runs.
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
  // Gathers chunks[i] (chunk_bytes each, addresses inside the registered pool) into device buffer
  // (pair, buffer) at i × chunk_bytes, records the buffer's event and returns once the copy is done.
  virtual absl::Status push_chunks(uint32_t pair, uint32_t buffer, const uint8_t* const* chunks, uint32_t n,
                                   uint64_t chunk_bytes) = 0;
};

// True when this build has the CUDA push path.
bool cuda_push_built();

// Registers host memory with CUDA for DMA and as mapped memory that kernels read (portable to every
// context). UNIMPLEMENTED without CUDA, UNAVAILABLE when no device is usable.
absl::Status cuda_register_host(void* p, uint64_t bytes);
void cuda_unregister_host(void* p);

// Opens the worker's device staging area and events. pool: the registered pool [pool_bytes], the
// only memory push_chunks() reads.
absl::StatusOr<std::unique_ptr<StagingPusher>> make_cuda_pusher(const CudaPushSpec& spec, uint32_t staging_pairs,
                                                                uint64_t buffer_bytes, const uint8_t* pool,
                                                                uint64_t pool_bytes);

}  // namespace freekv::kvstore
