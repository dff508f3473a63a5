#include "proto/convert/kv_geometry.h"

namespace freekv {

v1::KvDType kv_dtype_to_proto(DType t) {
  switch (t) {
    case DType::kF32: return v1::KV_DTYPE_F32;
    case DType::kF16: return v1::KV_DTYPE_F16;
    case DType::kBF16: return v1::KV_DTYPE_BF16;
  }
  return v1::KV_DTYPE_UNSPECIFIED;
}

absl::StatusOr<DType> kv_dtype_from_proto(v1::KvDType t) {
  switch (t) {
    case v1::KV_DTYPE_F32: return DType::kF32;
    case v1::KV_DTYPE_F16: return DType::kF16;
    case v1::KV_DTYPE_BF16: return DType::kBF16;
    default: return absl::InvalidArgumentError("geometry.dtype must be KV_DTYPE_F32, KV_DTYPE_F16 or KV_DTYPE_BF16");
  }
}

void geometry_to_proto(const dp::SessionGeometry& g, v1::SessionGeometry* out) {
  out->set_n_layers(g.n_layers);
  out->set_n_kv_heads(g.n_kv_heads);
  out->set_head_dim(g.head_dim);
  out->set_page_tokens(g.page_tokens);
  out->set_dtype(kv_dtype_to_proto(g.dtype));
}

absl::StatusOr<dp::SessionGeometry> geometry_from_proto(const v1::SessionGeometry& g) {
  FREEKV_ASSIGN_OR_RETURN(DType dtype, kv_dtype_from_proto(g.dtype()));
  return dp::SessionGeometry{g.n_layers(), g.n_kv_heads(), g.head_dim(), g.page_tokens(), dtype};
}

}  // namespace freekv
