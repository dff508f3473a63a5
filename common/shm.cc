#include "common/shm.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/units.h"

namespace freekv {

static absl::Status shm_error(const std::string& what, const std::string& name, int err) {
  std::string msg = absl::StrCat(what, " /dev/shm/", name, ": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EEXIST: return absl::AlreadyExistsError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    case ENOMEM:
    case ENOSPC: return absl::ResourceExhaustedError(msg);
    default: return absl::UnavailableError(msg);
  }
}

absl::Status SharedMemory::check_name(const std::string& name) {
  if (name.empty() || name.size() > 240) {
    return absl::InvalidArgumentError(absl::StrCat("shared-memory name '", name, "' must be 1 to 240 characters"));
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("shared-memory name '", name,
                                                     "' may only contain letters, digits, '.', '_' and '-'"));
    }
  }
  if (name == "." || name == "..") return absl::InvalidArgumentError("shared-memory name may not be . or ..");
  return absl::OkStatus();
}

uint64_t shm_free_bytes() {
  struct statvfs st;
  if (statvfs("/dev/shm", &st) != 0) return UINT64_MAX;  // unknown: let the reservation itself decide
  return uint64_t(st.f_bavail) * uint64_t(st.f_frsize);
}

absl::StatusOr<std::unique_ptr<SharedMemory>> SharedMemory::create(const std::string& name, uint64_t bytes) {
  FREEKV_RETURN_IF_ERROR(check_name(name));
  if (bytes == 0) return absl::InvalidArgumentError("a shared-memory segment needs a non-zero size");
  const std::string path = "/" + name;
  int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return shm_error("cannot create", name, errno);
  // The mode given to shm_open is masked by the umask; make sure it is exactly 0600.
  fchmod(fd, 0600);
  std::unique_ptr<SharedMemory> m(new SharedMemory());
  m->name_ = name;
  m->fd_ = fd;
  // The memory is reserved now, not at first touch: a /dev/shm that cannot hold the segment is an
  // error here rather than a SIGBUS later.
  const uint64_t free_bytes = shm_free_bytes();
  const int err = bytes > free_bytes ? ENOSPC : posix_fallocate(fd, 0, off_t(bytes));
  if (err != 0) {
    absl::Status s = err == ENOSPC
                         ? absl::ResourceExhaustedError(absl::StrCat(
                               "/dev/shm/", name, " needs ", format_size(bytes), " but /dev/shm has ",
                               format_size(free_bytes), " free; free space there (unused pools: freekv-kvstore "
                               "--remove-pool) or ask for less"))
                         : shm_error(absl::StrCat("cannot reserve ", format_size(bytes), " for"), name, err);
    shm_unlink(path.c_str());
    return s;
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    absl::Status s = shm_error("cannot map", name, errno);
    shm_unlink(path.c_str());
    return s;
  }
  m->data_ = static_cast<uint8_t*>(p);
  m->size_ = bytes;
  return m;
}

absl::StatusOr<std::unique_ptr<SharedMemory>> SharedMemory::open(const std::string& name, bool writable) {
  FREEKV_RETURN_IF_ERROR(check_name(name));
  const std::string path = "/" + name;
  int fd = shm_open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
  if (fd < 0) return shm_error("cannot open", name, errno);
  std::unique_ptr<SharedMemory> m(new SharedMemory());
  m->name_ = name;
  m->fd_ = fd;
  struct stat st;
  if (fstat(fd, &st) != 0) return shm_error("cannot stat", name, errno);
  if (st.st_size <= 0) return absl::FailedPreconditionError(absl::StrCat("/dev/shm/", name, " is empty"));
  void* p = mmap(nullptr, size_t(st.st_size), writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return shm_error("cannot map", name, errno);
  m->data_ = static_cast<uint8_t*>(p);
  m->size_ = uint64_t(st.st_size);
  return m;
}

absl::Status SharedMemory::unlink(const std::string& name) {
  FREEKV_RETURN_IF_ERROR(check_name(name));
  const std::string path = "/" + name;
  if (shm_unlink(path.c_str()) != 0) return shm_error("cannot remove", name, errno);
  return absl::OkStatus();
}

bool SharedMemory::exists(const std::string& name) {
  if (!check_name(name).ok()) return false;
  struct stat st;
  return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

SharedMemory::~SharedMemory() {
  if (data_ != nullptr) {
    if (locked_) munlock(data_, size_);
    munmap(data_, size_);
  }
  if (fd_ >= 0) close(fd_);
}

absl::Status SharedMemory::lock_exclusive() {
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("/dev/shm/", name_, " is in use by another process (it holds the segment's lock)"));
    }
    return shm_error("cannot lock", name_, errno);
  }
  return absl::OkStatus();
}

absl::Status SharedMemory::lock_in_memory() {
  if (mlock(data_, size_) != 0) {
    const int err = errno;
    struct rlimit rl {};
    getrlimit(RLIMIT_MEMLOCK, &rl);
    const std::string limit =
        rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : format_size(uint64_t(rl.rlim_cur));
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot lock ", format_size(size_), " of /dev/shm/", name_, " in memory: ", std::strerror(err),
        " (memlock limit ", limit, "; raise it with `ulimit -l unlimited`, LimitMEMLOCK=infinity in systemd, "
        "or CAP_IPC_LOCK)"));
  }
  locked_ = true;
  return absl::OkStatus();
}

absl::Status SharedMemory::protect_read_only(uint64_t offset, uint64_t bytes) {
  if (offset + bytes > size_) return absl::OutOfRangeError("protect_read_only beyond the mapping");
  if (bytes == 0) return absl::OkStatus();
  if (mprotect(data_ + offset, bytes, PROT_READ) != 0) return shm_error("cannot protect", name_, errno);
  return absl::OkStatus();
}

void SharedMemory::advise_huge_pages() {
#ifdef MADV_HUGEPAGE
  madvise(data_, size_, MADV_HUGEPAGE);
#endif
}

}  // namespace freekv
