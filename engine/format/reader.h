// Reader and verifier of .qtf files over a memory buffer (no filesystem, no allocation).
// open() verifies the whole file (docs/format.md) before anything is used; afterwards every accessor
// is safe. Tensor data is used in place: the buffer must outlive the ModelFile.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "format/format.h"

namespace qtf::format {

struct Str {
  const char* data = nullptr;
  uint32_t size = 0;
  bool equals(const char* s) const;
};

struct TensorInfo {
  Str name;
  DType dtype = DType::f32;
  int ndim = 0;
  uint64_t dims[kMaxDims] = {0};
  uint64_t offset = 0, size = 0;
  float scale = 1.f;              // i8 only
  const void* data = nullptr;    // points into the buffer: the tensor's bytes
  const void* values = nullptr;  // its values (== data, but for q8: after the scales)
  const float* row_scales = nullptr;  // q8 only: [rows()] one scale per row, at data
  uint64_t elements() const;
  uint64_t rows() const;  // elements / last dimension
};

// Values of a tensor that are NaN or +-Inf, by exponent bits (no float traps): f32 and f16 values, and
// the scales of i8, q8, q4, q3, q4s and q3s (a bad scale counts once, at the first value it scales). *first receives
// the index of the first one.
uint64_t count_nonfinite(const TensorInfo& t, uint64_t* first);

struct MetaEntry {
  Str key;
  MetaType type = MetaType::i64;
  uint32_t count = 0;            // array element count (1 for scalars, bytes for str)
  const uint8_t* value = nullptr;  // raw encoded value (after the type byte)
  // Typed access (false if the type does not match).
  bool as_i64(int64_t* out) const;
  bool as_f64(double* out) const;  // accepts i64 too
  bool as_str(Str* out) const;
  bool i64_at(uint32_t i, int64_t* out) const;
  bool f64_at(uint32_t i, double* out) const;
  bool str_at(uint32_t i, Str* out) const;  // O(i) walk
  // Sequential access to a str[] in O(1) per element: start with *cursor = 0; false after the last.
  bool next_str(uint64_t* cursor, Str* out) const;
};

// Whether open() computes the checksum of the whole file (verify), or takes the stored one as right
// because the caller checked these very bytes before (trust_stored: the host's record of files verified
// once, engine/host/verified.h). Everything else is checked either way.
enum class Checksum { verify, trust_stored };

class ModelFile {
 public:
  // Verifies everything; on error the object stays empty.
  Status open(const void* data, size_t size, Checksum checksum = Checksum::verify);
  // The checksum a file's header stores (false when the buffer is shorter than the header).
  static bool stored_checksum(const void* data, size_t size, uint32_t* crc);
  bool is_open() const { return base_ != nullptr; }

  uint32_t version() const { return version_; }
  uint64_t file_size() const { return size_; }
  uint32_t checksum() const { return checksum_; }
  uint32_t meta_count() const { return meta_count_; }
  uint32_t tensor_count() const { return tensor_count_; }

  // Sequential iteration: pass cursor 0 first; returns false at the end.
  bool next_meta(uint64_t* cursor, MetaEntry* out) const;
  bool next_tensor(uint64_t* cursor, TensorInfo* out) const;

  bool find_meta(const char* key, MetaEntry* out) const;
  bool find_tensor(const char* name, TensorInfo* out) const;

  // Convenience getters with a clear error when missing or of the wrong type.
  Status get_i64(const char* key, int64_t* out) const;
  Status get_f64(const char* key, double* out) const;
  Status get_str(const char* key, Str* out) const;
  // Optional variants: leave *out unchanged when the key is absent.
  Status get_i64_or(const char* key, int64_t* out) const;
  Status get_f64_or(const char* key, double* out) const;

 private:
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0, checksum_ = 0, meta_count_ = 0, tensor_count_ = 0;
  uint64_t meta_offset_ = 0, meta_end_ = 0, table_offset_ = 0, table_end_ = 0, data_offset_ = 0;
};

}  // namespace qtf::format
