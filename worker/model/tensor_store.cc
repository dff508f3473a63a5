// TensorStore: every tensor of a model directory, from one file or from the shards an index lists.
// The files stay mapped for the store's lifetime, so views are valid as long as the store is.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "worker/model/json_util.h"
#include "worker/model/safetensors.h"

namespace freekv {
namespace {

using model_internal::describe_json;
using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

// Shard names come from the index, which may come from anywhere: keep them inside the directory.
bool safe_relative_path(const std::string& name) {
  if (name.empty() || name.find('\0') != std::string::npos) return false;
  std::filesystem::path p(name);
  if (p.is_absolute()) return false;
  for (const auto& part : p)
    if (part == "..") return false;
  return true;
}

// The weight map of an index file: tensor name -> shard file name.
absl::StatusOr<std::map<std::string, std::string>> read_index(const std::string& path) {
  FREEKV_ASSIGN_OR_RETURN(std::string text, read_file(path));
  FREEKV_ASSIGN_OR_RETURN(json root, model_internal::parse_json(text, path));
  const json* map = model_internal::find_non_null(root, "weight_map");
  if (map == nullptr || !map->is_object())
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": expected an object with key 'weight_map' {tensor name: shard file}, got ",
        map == nullptr ? describe_json(root) : absl::StrCat("weight_map ", describe_json(*map))));
  std::map<std::string, std::string> out;
  for (const auto& [name, shard] : map->items()) {
    if (!shard.is_string() || !safe_relative_path(shard.get_ref<const std::string&>()))
      return absl::InvalidArgumentError(absl::StrCat(path, ": weight_map['", name,
                                                     "']: expected a file name inside the directory, got ",
                                                     describe_json(shard)));
    out.emplace(name, shard.get_ref<const std::string&>());
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": weight_map is empty"));
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TensorStore>> TensorStore::open_dir(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec))
    return absl::NotFoundError(
        absl::StrCat("model directory '", model_dir, "' does not exist or is not a directory"));
  std::unique_ptr<TensorStore> store(new TensorStore());
  store->dir_ = model_dir;
  const std::string index_path = (fs::path(model_dir) / kIndexFile).string();
  const std::string single_path = (fs::path(model_dir) / kSingleFile).string();

  // Maps and parses one file and adds its tensors; a name already held by another file is an error.
  auto add_file = [&](const std::string& path) -> absl::Status {
    FREEKV_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::open(path));
    FREEKV_ASSIGN_OR_RETURN(std::vector<TensorView> views,
                            parse_safetensors(file->data(), file->size(), path));
    size_t file_index = store->files_.size();
    store->files_.push_back(std::move(file));
    for (TensorView& v : views) {
      auto it = store->tensors_.find(v.name);
      if (it != store->tensors_.end())
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", v.name, "' is in both ", store->files_[it->second.second]->path(), " and ", path));
      std::string name = v.name;
      store->tensors_.emplace(std::move(name), std::make_pair(std::move(v), file_index));
    }
    return absl::OkStatus();
  };

  // The index wins when both exist, as in tests/reference/forward.py, so both read the same weights.
  if (fs::exists(index_path, ec)) {
    FREEKV_ASSIGN_OR_RETURN(auto weight_map, read_index(index_path));
    std::set<std::string> shards;
    for (const auto& [name, shard] : weight_map) shards.insert(shard);
    for (const std::string& shard : shards) {
      std::string path = (fs::path(model_dir) / shard).string();
      absl::Status s = add_file(path);
      if (!s.ok())
        return absl::Status(s.code(), absl::StrCat(index_path, " lists shard '", shard, "': ", s.message()));
    }
    for (const auto& [name, entry] : store->tensors_) {
      auto it = weight_map.find(name);
      const std::string& path = store->files_[entry.second]->path();
      if (it == weight_map.end())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", name, "' is not listed in ", index_path));
      if ((fs::path(model_dir) / it->second).string() != path)
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", name, "' is mapped to '", it->second, "' by ", index_path));
    }
    for (const auto& [name, shard] : weight_map) {
      if (!store->tensors_.count(name))
        return absl::InvalidArgumentError(absl::StrCat(index_path, " maps tensor '", name, "' to '", shard,
                                                       "', but that file has no such tensor"));
    }
    return store;
  }
  if (fs::exists(single_path, ec)) {
    FREEKV_RETURN_IF_ERROR(add_file(single_path));
    return store;
  }
  return absl::NotFoundError(
      absl::StrCat("model directory '", model_dir, "' has no ", kSingleFile, " and no ", kIndexFile));
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second.first;
}

absl::StatusOr<const TensorView*> TensorStore::get(const std::string& name,
                                                   const std::vector<int64_t>& shape) const {
  const TensorView* v = find(name);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat("model directory '", dir_, "' has no tensor '", name,
                                            "' (expected shape ", shape_string(shape), ")"));
  if (v->shape != shape)
    return absl::InvalidArgumentError(absl::StrCat(file_of(name), ": tensor '", name, "' has shape ",
                                                   shape_string(v->shape), ", expected ",
                                                   shape_string(shape)));
  if (!weight_dtype(v->dtype).ok())
    return absl::InvalidArgumentError(absl::StrCat(file_of(name), ": tensor '", name, "' has dtype ",
                                                   std::string(st_dtype_name(v->dtype)),
                                                   ", but weights must be F32, F16 or BF16"));
  return v;
}

std::string TensorStore::file_of(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? std::string() : files_[it->second.second]->path();
}

}  // namespace freekv
