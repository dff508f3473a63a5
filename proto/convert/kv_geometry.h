// The one mapping between the kvstore's proto messages and the data plane's session geometry, shared
// by the kvstore (server side) and the worker's kvstore client.
#pragma once

#include "common/dataplane.h"
#include "common/status.h"
#include "freekv/v1/kvstore.pb.h"

namespace freekv {

v1::KvDType kv_dtype_to_proto(DType t);
// INVALID_ARGUMENT for KV_DTYPE_UNSPECIFIED or an unknown value.
absl::StatusOr<DType> kv_dtype_from_proto(v1::KvDType t);

void geometry_to_proto(const dp::SessionGeometry& g, v1::SessionGeometry* out);
absl::StatusOr<dp::SessionGeometry> geometry_from_proto(const v1::SessionGeometry& g);

}  // namespace freekv
