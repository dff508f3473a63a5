// CPU-only build: the CUDA push path is absent (see cuda_push.h).
#include "kvstore/cuda_push.h"

namespace freekv::kvstore {

bool cuda_push_built() { return false; }

absl::Status cuda_register_host(void*, uint64_t) {
  return absl::UnimplementedError("freekv-kvstore was built without CUDA");
}

void cuda_unregister_host(void*) {}

absl::StatusOr<std::unique_ptr<StagingPusher>> make_cuda_pusher(const CudaPushSpec&, uint32_t, uint64_t, const uint8_t*,
                                                                uint64_t) {
  return absl::UnimplementedError(
      "this freekv-kvstore was built without CUDA; attach without CUDA handles (CPU handover through shared memory)");
}

}  // namespace freekv::kvstore
