// Matrix products on the GPU, twins of kernels/cpu/matmul.cc. Decode (n ≤ kGemvMaxRows rows) is bound
// by reading the weights, so a GEMV kernel streams each weight row once with 16-byte loads for all n
// activation rows; prefill is bound by arithmetic, so it goes to cuBLAS tensor cores in the weights'
// dtype with fp32 accumulation.
#include <cublas_v2.h>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace freekv {

struct MatmulContext {
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  void* scratch = nullptr;  // x converted to the weights' dtype, grown on demand
  size_t scratch_bytes = 0;
};

namespace {

constexpr int kWarpsPerBlock = 4;

// Sixteen bytes of T as fp32: 4 floats or 8 halves.
template <typename T>
__device__ __forceinline__ void load16(const T* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int j = 0; j < int(16 / sizeof(T)); ++j) out[j] = to_f32(e[j]);
}

// kWarpsPerRow warps per group of kWRows weight rows, each taking every kWarpsPerRow-th 16-byte column
// block of them; the kRows activation rows accumulate together, so each weight row is read once, and
// each activation load serves kWRows weight rows (batched decode would otherwise be bound by
// re-reading the activations). The warps of a group add up in shared memory. kVector: k is a multiple
// of the 16-byte width and rows are 16-byte aligned.
template <typename T, int kRows, int kWRows, int kWarpsPerRow, bool kVector>
__global__ void gemv_kernel(const float* x, const T* w, const float* bias, float* y, int64_t k, int64_t m) {
  constexpr int kGroups = kWarpsPerBlock / kWarpsPerRow;
  const int warp = threadIdx.x / 32, group = warp / kWarpsPerRow, part = warp % kWarpsPerRow;
  const int64_t row0 = (int64_t(blockIdx.x) * kGroups + group) * kWRows;
  const int lane = threadIdx.x % 32;
  const int n_w = row0 < m ? int(min(int64_t(kWRows), m - row0)) : 0;
  float acc[kRows][kWRows] = {};
  if constexpr (kVector) {
    constexpr int kWidth = 16 / sizeof(T);
#pragma unroll 4
    for (int64_t i = (int64_t(part) * 32 + lane) * kWidth; i < k; i += kWarpsPerRow * 32 * kWidth) {
      float wv[kWRows][kWidth];
#pragma unroll
      for (int rr = 0; rr < kWRows; ++rr) {
        if (rr < n_w) {
          load16(w + (row0 + rr) * k + i, wv[rr]);
        } else {
          for (int j = 0; j < kWidth; ++j) wv[rr][j] = 0.f;
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float xv[kWidth];
#pragma unroll
        for (int j = 0; j < kWidth / 4; ++j) {
          const float4 xq = reinterpret_cast<const float4*>(x + r * k + i)[j];
          xv[4 * j] = xq.x;
          xv[4 * j + 1] = xq.y;
          xv[4 * j + 2] = xq.z;
          xv[4 * j + 3] = xq.w;
        }
#pragma unroll
        for (int rr = 0; rr < kWRows; ++rr) {
#pragma unroll
          for (int j = 0; j < kWidth; ++j) acc[r][rr] += wv[rr][j] * xv[j];
        }
      }
    }
  } else {
    for (int64_t i = int64_t(part) * 32 + lane; i < k; i += kWarpsPerRow * 32) {
      float wv[kWRows];
#pragma unroll
      for (int rr = 0; rr < kWRows; ++rr) wv[rr] = rr < n_w ? to_f32(w[(row0 + rr) * k + i]) : 0.f;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float xv = x[r * k + i];
#pragma unroll
        for (int rr = 0; rr < kWRows; ++rr) acc[r][rr] += wv[rr] * xv;
      }
    }
  }
  __shared__ float partial[kWarpsPerBlock][kRows][kWRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int rr = 0; rr < kWRows; ++rr) {
      const float s = warp_sum(acc[r][rr]);
      if (lane == 0) partial[warp][r][rr] = s;
    }
  }
  if constexpr (kWarpsPerRow > 1) __syncthreads();
  if (part != 0 || lane != 0) return;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int rr = 0; rr < kWRows; ++rr) {
      float s = 0.f;
#pragma unroll
      for (int p = 0; p < kWarpsPerRow; ++p) s += partial[warp + p][r][rr];
      if (rr < n_w) y[r * m + row0 + rr] = s + (bias != nullptr ? bias[row0 + rr] : 0.f);
    }
  }
}

template <typename T>
__global__ void convert_kernel(const float* x, T* out, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_f32<T>(x[i]);
}

template <typename T, int kRows>
cudaError_t launch_gemv(const float* x, const T* w, const float* bias, float* y, int64_t k, int64_t m,
                        cudaStream_t stream) {
  // One weight row per warp for a single activation row (nothing to share); more rows share each
  // activation load among 2 or 4 weight rows.
  constexpr int kWRows = kRows == 1 ? 1 : kRows < 4 ? 2 : 4;
  // Several warps per weight row keep more loads in flight per row; measured on the H200 at the 8B's
  // down projection (bench/results/gpu-h200-20261130-gemv-ab): 1 row 38 → 34 µs with 4 warps, 4 rows
  // 54 → 37 µs with 2, 8 rows 74 → 64 µs with 4.
  constexpr int kWarpsPerRow = kRows >= 2 && kRows <= 4 ? 2 : 4;
  const unsigned blocks = blocks_for(m, kWarpsPerBlock / kWarpsPerRow * kWRows);
  const bool vector = k % (16 / sizeof(T)) == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(x) % 16 == 0;
  if (vector) {
    gemv_kernel<T, kRows, kWRows, kWarpsPerRow, true><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(x, w, bias, y, k, m);
  } else {
    gemv_kernel<T, kRows, kWRows, kWarpsPerRow, false><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(x, w, bias, y, k, m);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t gemv(const float* x, const T* w, const float* bias, float* y, int64_t n, int64_t k, int64_t m,
                 cudaStream_t stream) {
  switch (n) {
    case 1: return launch_gemv<T, 1>(x, w, bias, y, k, m, stream);
    case 2: return launch_gemv<T, 2>(x, w, bias, y, k, m, stream);
    case 3: return launch_gemv<T, 3>(x, w, bias, y, k, m, stream);
    case 4: return launch_gemv<T, 4>(x, w, bias, y, k, m, stream);
    case 5: return launch_gemv<T, 5>(x, w, bias, y, k, m, stream);
    case 6: return launch_gemv<T, 6>(x, w, bias, y, k, m, stream);
    case 7: return launch_gemv<T, 7>(x, w, bias, y, k, m, stream);
    case 8: return launch_gemv<T, 8>(x, w, bias, y, k, m, stream);
  }
  return cudaErrorInvalidValue;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

// cuBLAS reports its own status type; the launchers speak cudaError_t.
cudaError_t from_cublas(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return cudaSuccess;
    case CUBLAS_STATUS_ALLOC_FAILED: return cudaErrorMemoryAllocation;
    case CUBLAS_STATUS_INVALID_VALUE: return cudaErrorInvalidValue;
    case CUBLAS_STATUS_NOT_SUPPORTED: return cudaErrorNotSupported;
    case CUBLAS_STATUS_NOT_INITIALIZED: return cudaErrorInitializationError;
    case CUBLAS_STATUS_ARCH_MISMATCH: return cudaErrorNoKernelImageForDevice;
    case CUBLAS_STATUS_EXECUTION_FAILED: return cudaErrorLaunchFailure;
    default: return cudaErrorUnknown;  // CUBLAS_STATUS_INTERNAL_ERROR and the rest
  }
}

}  // namespace

cudaError_t matmul_context_create(MatmulContext** ctx, cudaStream_t stream) {
  auto* c = new MatmulContext;
  c->stream = stream;
  cudaError_t e = from_cublas(cublasCreate(&c->handle));
  if (e == cudaSuccess) e = from_cublas(cublasSetStream(c->handle, stream));
  if (e != cudaSuccess) {
    matmul_context_destroy(c);
    return e;
  }
  *ctx = c;
  return cudaSuccess;
}

void matmul_context_destroy(MatmulContext* ctx) {
  if (ctx == nullptr) return;
  if (ctx->handle != nullptr) cublasDestroy(ctx->handle);
  cudaFree(ctx->scratch);
  delete ctx;
}

cudaError_t matmul_cuda(MatmulContext* ctx, const float* x, const void* w, DType w_dtype, const float* bias, float* y,
                        int64_t n, int64_t k, int64_t m) {
  if (n == 0 || m == 0) return cudaSuccess;
  if (n <= kGemvMaxRows) {
    return dispatch_dtype(w_dtype, [&](auto tag) {
      using T = decltype(tag);
      return gemv<T>(x, static_cast<const T*>(w), bias, y, n, k, m, ctx->stream);
    });
  }
  // Row-major y[n, m] = x · wᵀ is column-major yᵀ[m, n] = w[m, k] (stored as column-major k × m, so
  // transposed) times xᵀ[k, n].
  const void* b = x;
  if (w_dtype != DType::kF32) {
    const size_t need = size_t(n * k) * dtype_size(w_dtype);
    if (need > ctx->scratch_bytes) {
      cudaFree(ctx->scratch);  // frees only after the stream's earlier work: cudaFree synchronizes
      ctx->scratch = nullptr;
      ctx->scratch_bytes = 0;
      if (cudaError_t e = cudaMalloc(&ctx->scratch, need); e != cudaSuccess) return e;
      ctx->scratch_bytes = need;
    }
    cudaError_t e = dispatch_dtype(w_dtype, [&](auto tag) {
      using T = decltype(tag);
      convert_kernel<T><<<blocks_for(n * k, 256), 256, 0, ctx->stream>>>(x, static_cast<T*>(ctx->scratch), n * k);
      return cudaGetLastError();
    });
    if (e != cudaSuccess) return e;
    b = ctx->scratch;
  }
  const float alpha = 1.f, beta = 0.f;
  cudaError_t e = from_cublas(cublasGemmEx(ctx->handle, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(n), int(k), &alpha, w,
                                           cuda_type(w_dtype), int(k), b, cuda_type(w_dtype), int(k), &beta, y,
                                           CUDA_R_32F, int(m), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (e != cudaSuccess || bias == nullptr) return e;
  return add_bias_cuda(y, bias, n, m, ctx->stream);
}

}  // namespace freekv
