// make_device_backend in a build without CUDA (no nvcc when it was configured).
#include "absl/strings/str_cat.h"
#include "worker/gpu/device_backend.h"

namespace freekv {

absl::Status check_device(const DeviceOptions& device) {
  if (device.name == "cpu") return absl::OkStatus();
  FREEKV_RETURN_IF_ERROR(cuda_device_index(device.name).status());
  return absl::UnavailableError(absl::StrCat("--device ", device.name,
                                             ": this freekv was built without CUDA (no nvcc when it was configured); ",
                                             "rebuild where the CUDA Toolkit is installed, or use --device cpu"));
}

absl::StatusOr<std::unique_ptr<StepBackend>> make_device_backend(const ModelWeights&, const EngineOptions& options) {
  FREEKV_RETURN_IF_ERROR(check_device(options.device));
  return absl::InternalError("make_device_backend: the CPU is not a device backend");
}

}  // namespace freekv
