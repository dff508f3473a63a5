// Builds without CUDA: no device staging (see device_staging.h).
#include "worker/kv/device_staging.h"

namespace freekv {

absl::StatusOr<std::unique_ptr<DeviceStaging>> DeviceStaging::create(int, uint32_t, uint64_t) {
  return absl::UnimplementedError("this worker was built without CUDA: recalls into device memory need a CUDA build");
}

DeviceStaging::~DeviceStaging() = default;

}  // namespace freekv
