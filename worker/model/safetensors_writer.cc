// write_safetensors: the deterministic writer used by mkmodel and the tests (layout in safetensors.h).
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "worker/model/safetensors.h"

namespace freekv {
namespace {

using nlohmann::json;

StDType st_dtype_of(DType t) {
  switch (t) {
    case DType::kF32:
      return StDType::kF32;
    case DType::kF16:
      return StDType::kF16;
    case DType::kBF16:
      return StDType::kBF16;
  }
  return StDType::kF32;
}

absl::Status io_error(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat("cannot ", what, " '", path, "': ", std::strerror(errno)));
}

absl::Status check_tensor(const TensorToWrite& t, const std::string& path) {
  auto bad = [&](absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "': ", msg));
  };
  if (t.name.empty()) return bad("empty tensor name");
  if (t.name == "__metadata__") return bad("the name is reserved for the metadata");
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0) return bad(absl::StrCat("negative dimension ", d));
    if (__builtin_mul_overflow(numel, uint64_t(d), &numel)) return bad("shape overflows");
  }
  uint64_t need = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &need)) return bad("shape overflows");
  if (t.bytes.size() != need)
    return bad(absl::StrCat("has ", t.bytes.size(), " bytes but its shape of ",
                            std::string(st_dtype_name(st_dtype_of(t.dtype))), " needs ", need));
  return absl::OkStatus();
}

}  // namespace

absl::Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> names;
  for (const TensorToWrite& t : tensors) {
    FREEKV_RETURN_IF_ERROR(check_tensor(t, path));
    if (!names.insert(t.name).second)
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' is given twice"));
  }

  // Data order: element size descending, then name. With no gaps, each tensor then starts at a
  // multiple of its own element size (every earlier tensor's length is a multiple of it).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    size_t sa = dtype_size(tensors[a].dtype), sb = dtype_size(tensors[b].dtype);
    return sa != sb ? sa > sb : tensors[a].name < tensors[b].name;
  });

  json header = json::object();  // keys sorted by name (std::map), so the header is deterministic
  uint64_t offset = 0;
  for (size_t i : order) {
    const TensorToWrite& t = tensors[i];
    header[t.name] = {{"dtype", std::string(st_dtype_name(st_dtype_of(t.dtype)))},
                      {"shape", t.shape},
                      {"data_offsets", json::array({offset, offset + uint64_t(t.bytes.size())})}};
    offset += t.bytes.size();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // a name or metadata string that is not valid UTF-8
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot encode the header: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));

  // Streamed rather than assembled in memory: a checkpoint may be as large as the tensors it holds.
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return io_error("create", tmp);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), std::streamsize(text.size()));
    for (size_t i : order) out.write(tensors[i].bytes.data(), std::streamsize(tensors[i].bytes.size()));
    out.flush();
    if (!out) {
      absl::Status s = io_error("write", tmp);
      std::remove(tmp.c_str());
      return s;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = io_error("rename into", path);
    std::remove(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

}  // namespace freekv
