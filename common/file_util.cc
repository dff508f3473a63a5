#include "common/file_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace freekv {

static absl::Status errno_status(const std::string& what, const std::string& path) {
  int err = errno;
  std::string msg = absl::StrCat(what, " '", path, "': ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::UnavailableError(msg);
}

absl::StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return errno_status("cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return errno_status("cannot read", path);
  return ss.str();
}

absl::Status check_secret_file_mode(const std::string& path, const std::string& what) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat(what, " ", path, " does not exist"));
  if ((st.st_mode & 027) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(what, " ", path, " may be read or changed by other users (mode ",
                                                    absl::StrFormat("%04o", st.st_mode & 07777), "); run `chmod 600 ",
                                                    path, "` (or 640 to share it with the service's group)"));
  }
  return absl::OkStatus();
}

absl::Status write_file(const std::string& path, std::string_view contents) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return errno_status("cannot create", tmp);
    out.write(contents.data(), std::streamsize(contents.size()));
    if (!out) return errno_status("cannot write", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return errno_status("cannot rename into", path);
  return absl::OkStatus();
}

namespace {

// Reads one byte of every page. Under a hypervisor that shadows the guest's page tables (the VMs the
// benchmarks ran on), MAP_POPULATE fills the guest's tables but the first touch of each page still
// traps to the hypervisor, about 1.7 µs a page: 1 s for 2.5 GB of weights, paid by the first prefill
// chunk on both threads (0.55 s of a 512-token chunk) unless it is paid here, at load. On bare metal
// this is one TLB miss a page, a few tens of milliseconds.
void touch_every_page(const uint8_t* data, size_t size) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  for (size_t i = 0; i < size; i += page) (void)*static_cast<const volatile uint8_t*>(data + i);  // volatile: kept
}

}  // namespace

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status("cannot open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    auto s = errno_status("cannot stat", path);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    // MAP_POPULATE: the file is read whole at open (a model's weights, which every forward step reads
    // in full), so the first request does not pay a page fault per 4 KiB of weights (about 1 s for
    // 2.5 GB).
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
      auto s = errno_status("cannot map", path);
      ::close(fd);
      return s;
    }
    f->data_ = static_cast<const uint8_t*>(p);
    touch_every_page(f->data_, f->size_);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace freekv
