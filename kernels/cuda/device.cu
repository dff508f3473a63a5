// CUDA device discovery. The CUDA kernels compile wherever nvcc exists; they run only where a device
// is visible, and their tests exit 77 (ctest: skipped) otherwise.
#include <cuda_runtime.h>

#include "kernels/cuda/device.h"

namespace freekv {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

}  // namespace freekv
