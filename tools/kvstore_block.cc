#include "tools/kvstore_block.h"

#include <filesystem>

#include "common/dataplane.h"
#include "worker/model/config.h"

namespace freekv {

absl::StatusOr<std::string> kvstore_block_for_model(const std::string& model_dir, int64_t page_tokens, DType kv_dtype) {
  FREEKV_ASSIGN_OR_RETURN(ModelConfig c, load_model_config((std::filesystem::path(model_dir) / "config.json").string()));
  const dp::SessionGeometry g{uint32_t(c.n_layers), uint32_t(c.n_kv_heads), uint32_t(c.head_dim), uint32_t(page_tokens),
                              kv_dtype};
  return absl::StrCat((g.stored_page_bytes() + 4095) / 4096 * 4, "KiB");
}

}  // namespace freekv
