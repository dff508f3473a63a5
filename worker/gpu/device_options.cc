#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/units.h"
#include "worker/gpu/device_backend.h"

namespace freekv {

absl::StatusOr<int> cuda_device_index(const std::string& name) {
  int index = -1;
  if (!absl::StartsWith(name, "cuda:") || !absl::SimpleAtoi(name.substr(5), &index) || index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be cpu or cuda:N (N the CUDA device index, e.g. cuda:0), got '", name, "'"));
  }
  return index;
}

absl::StatusOr<DeviceOptions> device_options(const std::string& device, int64_t gpu_sequences, int64_t gpu_tokens,
                                             const std::string& gpu_memory) {
  if (device != "cpu") FREEKV_RETURN_IF_ERROR(cuda_device_index(device).status());
  if (gpu_sequences < 1 || gpu_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--gpu-sequences must be >= 1 and --gpu-tokens >= 0, got ",
                                                   gpu_sequences, " and ", gpu_tokens));
  }
  DeviceOptions o;
  o.name = device;
  o.sequences = gpu_sequences;
  o.tokens_per_sequence = gpu_tokens;
  absl::StatusOr<uint64_t> memory = parse_size(gpu_memory);
  if (!memory.ok()) return absl::InvalidArgumentError(absl::StrCat("--gpu-memory: ", memory.status().message()));
  o.memory_limit = *memory;
  return o;
}

}  // namespace freekv
