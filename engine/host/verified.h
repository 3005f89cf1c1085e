// The record of model files whose checksum this user has already verified, so a large .qtf's CRC-32 is
// computed once per file, not on every load (docs/format.md "Checksum"). Structure, bounds and shapes
// are still checked on every load; only the whole-file CRC is skipped, and only for the very file
// verified: same device, inode, size, modification and status-change times (to the nanosecond), and the
// same checksum in its header. Writing to the file changes its times, so it is verified again. Like
// git's index, a file changed within 2 seconds of its verification ("racily clean") is not recorded.
// What it does not catch: bytes that change on disk without the file's times changing (media errors).
// `qtf verify` always computes the checksum; QTF_VERIFIED_FILES=off turns the record off.
//
// Where: $QTF_VERIFIED_FILES (a file path, or "off"), else $XDG_CACHE_HOME/qtf/verified-files, else
// $HOME/.cache/qtf/verified-files; without any of them, nothing is recorded. At most 64 files.
#pragma once
#include <cstdint>

namespace qtf::host {

struct FileId {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
  bool valid = false;  // set by FileBytes::open from the opened file
};

// True when this file, with this stored checksum, was verified before.
bool verified_before(const FileId& id, uint32_t crc);
// Records a file whose checksum was just computed and matched (ignored when it changed in the last 2 s,
// or when the record cannot be written: it only saves time).
void remember_verified(const FileId& id, uint32_t crc);

}  // namespace qtf::host
