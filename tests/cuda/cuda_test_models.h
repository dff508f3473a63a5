// Small random models for the CUDA tests that compare the GPU forward pass with the CPU engine's, one
// per architecture variant, written on first use into a directory of this process's own (removed at
// exit), so that tests running at once do not read each other's half-written models.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

#include "tools/random_model.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv::cuda_test {

struct Variant {
  const char* name;
  ModelArch arch;
  int heads, kv_heads, head_dim;
  bool tie;
};

class ModelsDir {
 public:
  ModelsDir()
      : path_(std::filesystem::temp_directory_path() / ("freekv-cuda-test-models-" + std::to_string(getpid()))) {}
  ~ModelsDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string model_dir(const Variant& v) {
  static const ModelsDir models;
  const std::string dir = (models.path() / v.name).string();
  if (std::filesystem::exists(dir + "/config.json")) return dir;
  RandomModelSpec spec;
  spec.config = small_model_config(v.arch, 2, 256, v.heads, v.kv_heads, v.head_dim, 512, v.tie);
  spec.tokenizer_json = *make_bpe_tokenizer_json(400);
  spec.seed = 11;
  if (absl::Status s = write_random_model(spec, dir); !s.ok()) std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return dir;
}

}  // namespace freekv::cuda_test
