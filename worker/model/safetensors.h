// Safetensors: a validating parser over a memory-mapped file, a multi-file store for sharded
// checkpoints (model.safetensors.index.json), and a writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:
// [begin, end]}, "__metadata__": {str: str}}, then the data region; offsets are relative to it.
// The parser rejects (with the file and tensor named): a header length beyond the file, JSON that is
// not an object, unknown keys' wrong types, unknown dtypes, negative or overflowing shapes, offsets
// out of the data region, begin > end, byte counts that differ from shape × dtype size, and tensors
// that overlap. It never reads outside the mapping. Gaps between tensors and trailing bytes are
// accepted (harmless; the Rust reference rejects them). A header is at most 100 MB.
//
// A model directory holds model.safetensors.index.json (preferred when present, as in
// tests/reference/forward.py) or model.safetensors. With an index, every tensor of every listed
// shard must be mapped to that shard, and every mapped tensor must be in its shard; a name held
// by two shards is an error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/file_util.h"
#include "common/status.h"

namespace freekv {

// Safetensors element types. Only F32/F16/BF16 can back weights; the others parse so that a
// checkpoint carrying e.g. an I64 buffer still opens, and fail only if a weight uses them.
enum class StDType : uint8_t { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool, kF8E4M3, kF8E5M2 };

struct TensorView {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // [nbytes] inside the file mapping
  size_t nbytes = 0;
};

// Parses a whole safetensors image held in memory; `source` names it in errors. Views point into
// `bytes`, which must outlive them. This is the fuzz entry point.
absl::StatusOr<std::vector<TensorView>> parse_safetensors(const uint8_t* bytes, size_t size,
                                                          const std::string& source);

// All tensors of a model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json. Files stay mapped for the store's lifetime.
class TensorStore {
 public:
  static absl::StatusOr<std::unique_ptr<TensorStore>> open_dir(const std::string& model_dir);

  // nullptr when absent.
  const TensorView* find(const std::string& name) const;

  // The tensor `name` with exactly `shape`, in a weight dtype (F32/F16/BF16); otherwise an error
  // naming the file, the tensor, what was expected and what was found.
  absl::StatusOr<const TensorView*> get(const std::string& name, const std::vector<int64_t>& shape) const;

  // Which file holds a tensor (for error messages).
  std::string file_of(const std::string& name) const;

 private:
  std::string dir_;  // for error messages
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, std::pair<TensorView, size_t>> tensors_;  // name -> (view, file index)
};

// Maps StDType to the engine DType; error for non-weight types.
absl::StatusOr<DType> weight_dtype(StDType t);
std::string_view st_dtype_name(StDType t);  // "BF16", ...
size_t st_dtype_size(StDType t);            // bytes per element (BOOL: 1)

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;  // [prod(shape) * dtype_size(dtype)]
};

// Writes one safetensors file, deterministically: header keys sorted by name, header padded with
// spaces to a multiple of 8 so the data region starts 8-byte aligned, and data packed without gaps
// (Hugging Face's loader rejects gaps) in order of element size, largest first, then name, so every
// tensor starts aligned to its element size. Written to path.tmp and renamed into place.
absl::Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata);

}  // namespace freekv
