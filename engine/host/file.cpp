#include "host/file.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qtf::host {

size_t FileBytes::resident() const {
  if (!mapped_) return size_;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (size_ + page - 1) / page;
  unsigned char* in_core = static_cast<unsigned char*>(std::malloc(pages));
  if (in_core == nullptr) return 0;
  size_t n = 0;
  if (mincore(data_, size_, in_core) == 0)
    for (size_t i = 0; i < pages; ++i) n += (in_core[i] & 1) ? page : 0;
  std::free(in_core);
  return n < size_ ? n : size_;
}

Status FileBytes::open(const char* path, bool use_mmap) {
  close();
  if (path == nullptr) return Status::error(Err::invalid_argument, "file path is null");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. Once fstat has
  // shown a regular file, reads go back to blocking (for regular files the flag changes nothing anyway).
  int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Status::error(Err::io, "cannot open '%s': %s", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error(Err::io, "'%s' is not a regular file (a directory, FIFO, device or socket)", path);
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int e = errno;
    ::close(fd);
    return Status::error(Err::io, "cannot read '%s': %s", path, std::strerror(e));
  }
  id_.dev = (uint64_t)st.st_dev, id_.ino = (uint64_t)st.st_ino, id_.size = (uint64_t)st.st_size;
  id_.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  id_.ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
  id_.valid = true;
  size_t n = (size_t)st.st_size;
  if (n == 0) {
    ::close(fd);
    return Status::error(Err::truncated, "'%s' is empty", path);
  }
  if (use_mmap) {
    void* p = mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED) {
      ::close(fd);
      data_ = static_cast<uint8_t*>(p);
      size_ = n;
      mapped_ = true;
      return Status::success();
    }
  }
  void* buf = std::aligned_alloc(64, (n + 63) / 64 * 64);
  if (buf == nullptr) {
    ::close(fd);
    return Status::error(Err::no_memory, "cannot allocate %zu bytes for '%s'", n, path);
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, static_cast<uint8_t*>(buf) + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = errno;
      ::close(fd);
      std::free(buf);
      return Status::error(Err::io, "reading '%s' failed after %zu of %zu bytes: %s", path, got, n,
                           r == 0 ? "unexpected end of file" : std::strerror(e));
    }
    got += (size_t)r;
  }
  ::close(fd);
  data_ = static_cast<uint8_t*>(buf);
  size_ = n;
  mapped_ = false;
  return Status::success();
}

void FileBytes::close() {
  if (data_ != nullptr) {
    if (mapped_) munmap(data_, size_);
    else std::free(data_);
  }
  data_ = nullptr;
  size_ = 0;
  mapped_ = false;
  id_ = FileId();
}

namespace {

// A path that exists and is not a regular file (after symlinks) must never be renamed over: it may be a
// device node (/dev/full), a FIFO or a directory someone meant to write into.
Status check_replaceable(const char* path) {
  struct stat st;
  if (::stat(path, &st) != 0) {
    if (errno == ENOENT) return Status::success();  // a new file (or a dangling symlink, replaced)
    return Status::error(Err::io, "cannot write '%s': %s", path, std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode))
    return Status::error(Err::io, "'%s' exists and is not a regular file (a directory, FIFO, device or socket); "
                         "refusing to replace it", path);
  return Status::success();
}

}  // namespace

Status write_file_atomic(const char* path, const void* data, size_t size) {
  if (path == nullptr) return Status::error(Err::invalid_argument, "file path is null");
  QTF_TRY(check_replaceable(path));
  char tmp[4096];
  if (std::snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
    return Status::error(Err::invalid_argument, "path too long: '%s'", path);
  // O_EXCL | O_NOFOLLOW: never write through something already at the temporary name.
  int fd = ::open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return Status::error(Err::io, "cannot create '%s': %s", tmp, std::strerror(errno));
  const uint8_t* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t w = ::write(fd, p + done, size - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp);
      return Status::error(Err::io, "writing '%s' failed: %s", tmp, std::strerror(e));
    }
    done += (size_t)w;
  }
  if (fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp);
    return Status::error(Err::io, "flushing '%s' failed: %s", tmp, std::strerror(errno));
  }
  Status st = check_replaceable(path);  // again: it may have appeared while the file was written
  if (!st.ok()) {
    ::unlink(tmp);
    return st;
  }
  if (std::rename(tmp, path) != 0) {
    int e = errno;
    ::unlink(tmp);
    return Status::error(Err::io, "cannot replace '%s': %s", path, std::strerror(e));
  }
  return Status::success();
}

}  // namespace qtf::host
