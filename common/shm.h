// POSIX shared-memory segments (/dev/shm/<name>): create exclusively with mode 0600, open, map,
// lock in memory, protect parts read-only, and take an advisory exclusive lock that dies with the
// process (so two servers can never own one segment).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace freekv {

// Bytes /dev/shm can still take (UINT64_MAX when it cannot be told).
uint64_t shm_free_bytes();

class SharedMemory {
 public:
  // A name is 1..240 characters of [A-Za-z0-9._-] (no slash: the segment is /dev/shm/<name>).
  static absl::Status check_name(const std::string& name);

  // Creates the segment with O_EXCL and mode 0600, sized `bytes` (zero-filled), mapped read-write.
  // ALREADY_EXISTS when a segment of that name exists.
  // Its memory is reserved at creation: RESOURCE_EXHAUSTED naming both sizes when /dev/shm cannot hold it.
  static absl::StatusOr<std::unique_ptr<SharedMemory>> create(const std::string& name, uint64_t bytes);
  // Opens an existing segment and maps all of it. NOT_FOUND when absent.
  static absl::StatusOr<std::unique_ptr<SharedMemory>> open(const std::string& name, bool writable);
  // Removes the name (mappings stay valid). NOT_FOUND when absent.
  static absl::Status unlink(const std::string& name);
  static bool exists(const std::string& name);

  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& name() const { return name_; }
  int fd() const { return fd_; }

  // flock(LOCK_EX | LOCK_NB) on the segment: FAILED_PRECONDITION when another process holds it.
  absl::Status lock_exclusive();
  // mlock of the whole mapping (faults every page in). The error names the limit to raise.
  absl::Status lock_in_memory();
  // Makes [offset, offset+bytes) of the mapping read-only (offset and bytes page-aligned).
  absl::Status protect_read_only(uint64_t offset, uint64_t bytes);
  // Asks for transparent huge pages on the mapping (fewer TLB misses when chunks are read at random
  // places). Best effort: takes effect only where /sys/kernel/mm/transparent_hugepage/shmem_enabled
  // allows it (advise, within_size or always); call before the pages are first touched.
  void advise_huge_pages();

 private:
  SharedMemory() = default;
  std::string name_;
  int fd_ = -1;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool locked_ = false;
};

}  // namespace freekv
