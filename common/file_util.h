// Files: read whole, write atomically, and map read-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace freekv {

absl::StatusOr<std::string> read_file(const std::string& path);

// Writes to path.tmp then renames, so a reader never sees a half-written file.
absl::Status write_file(const std::string& path, std::string_view contents);

// A secret (token, private key) must exist and be readable by its owner and, at most, the owner's group
// (Kubernetes mounts a Secret root:fsGroup 0440); nobody else may read it, nobody but the owner write it.
// NOT_FOUND / PERMISSION_DENIED naming `what` and path, and saying how to fix it.
absl::Status check_secret_file_mode(const std::string& path, const std::string& what);

// A read-only memory map of a whole file, read in and every page touched at open (MAP_POPULATE, then a
// read per page: see file_util.cc); unmapped on destruction.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace freekv
