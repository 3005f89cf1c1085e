// The thin OS layer: model bytes from a file, either memory-mapped (zero copy, read-only) or read into
// a 64-byte aligned heap buffer. The engine core itself only ever sees (pointer, size).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "host/verified.h"

namespace qtf::host {

class FileBytes {
 public:
  FileBytes() = default;
  ~FileBytes() { close(); }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  // mmap = true maps the file read-only (a file that changes on disk while mapped may change the
  // bytes seen; the model is verified once at load, see docs/reliability.md); false reads a copy.
  // Anything but a regular file (a FIFO, device, directory) is refused without blocking.
  Status open(const char* path, bool mmap = true);
  void close();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool mapped() const { return mapped_; }
  // The opened file's identity (device, inode, size, times), for the record of verified files.
  const FileId& id() const { return id_; }
  // Bytes of the mapping resident in RAM now (mincore; the whole size when read into memory).
  size_t resident() const;

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  FileId id_;
};

// Writes bytes to path via a temporary file and rename, so an existing file is never left half-written.
// A path that exists and is not a regular file (a device, FIFO or directory, also behind a symlink) is
// refused, never replaced.
Status write_file_atomic(const char* path, const void* data, size_t size);

}  // namespace qtf::host
