#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"

namespace freekv {

void swiglu(const float* gate, const float* up, float* out, int64_t n) { cpu_primitives().swiglu(gate, up, out, n); }

void embedding(const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t d, float* out) {
  const auto* base = static_cast<const uint8_t*>(table);
  const size_t row_bytes = size_t(d) * dtype_size(dtype);
  for (int64_t j = 0; j < n; ++j) cpu_primitives().to_f32(base + size_t(ids[j]) * row_bytes, dtype, out + j * d, d);
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace freekv
