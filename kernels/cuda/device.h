#pragma once

namespace freekv {

// Number of visible CUDA devices; 0 when the driver or a device is missing.
int cuda_device_count();

}  // namespace freekv
