// The worker's half of the CUDA data plane (DESIGN §1): device staging that the kvstore pushes recalled
// chunks into. A worker attaching with KvstoreClient::Options::cuda_device ≥ 0 allocates
// [staging_pairs][2][staging_buffer_bytes] of device memory and one interprocess event per (pair,
// buffer), and hands their CUDA IPC handles to the kvstore (IPC handles cover device memory only, so
// the pool cannot be exported the other way). The kvstore gathers each staging buffer's chunks into it
// with one kernel (kvstore/cuda_push.h), records the buffer's event and waits for it before the
// completion is posted, so a handed-over buffer is complete in device memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace freekv {

class DeviceStaging {
 public:
  // UNIMPLEMENTED in builds without CUDA; UNAVAILABLE when the device cannot be used.
  static absl::StatusOr<std::unique_ptr<DeviceStaging>> create(int device, uint32_t pairs, uint64_t buffer_bytes);
  ~DeviceStaging();
  DeviceStaging(const DeviceStaging&) = delete;
  DeviceStaging& operator=(const DeviceStaging&) = delete;

  const std::string& memory_handle() const { return memory_handle_; }               // cudaIpcMemHandle_t
  const std::vector<std::string>& event_handles() const { return event_handles_; }  // [pair][buffer]
  int device() const { return device_; }
  // Device address of staging buffer (pair, buffer).
  const uint8_t* buffer(uint32_t pair, uint32_t b) const { return base_ + (uint64_t(pair) * 2 + b) * buffer_bytes_; }

 private:
  DeviceStaging() = default;
  int device_ = 0;
  uint8_t* base_ = nullptr;
  uint64_t buffer_bytes_ = 0;
  std::string memory_handle_;
  std::vector<std::string> event_handles_;
  std::vector<void*> events_;  // cudaEvent_t
};

}  // namespace freekv
