// Writer of .qtf files (host side: tools, tests, converters; it allocates, so it is not part of the core).
// Produces exactly docs/format.md v1.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "format/format.h"
#include "format/reader.h"

namespace qtf::format {

class Writer {
 public:
  void add_i64(const std::string& key, int64_t v);
  void add_f64(const std::string& key, double v);
  void add_str(const std::string& key, const std::string& v);
  void add_i64_array(const std::string& key, const std::vector<int64_t>& v);
  void add_f64_array(const std::string& key, const std::vector<double>& v);
  void add_str_array(const std::string& key, const std::vector<std::string>& v);
  // One entry of a verified file's metadata, as it is (for tools that rewrite a file: quantize, tests).
  void add_meta(const MetaEntry& e);
  // data holds product(dims) elements of dtype (q8: the row scales, then the values); copied.
  void add_tensor(const std::string& name, DType dtype, const std::vector<uint64_t>& dims, const void* data,
                  float scale = 1.f);
  void add_f32(const std::string& name, const std::vector<uint64_t>& dims, const float* data) {
    add_tensor(name, DType::f32, dims, data);
  }
  // A q8 tensor: one scale per row (rows = product of all dims but the last), then the values.
  void add_q8(const std::string& name, const std::vector<uint64_t>& dims, const float* scales, const int8_t* values);
  // The complete file, checksum included.
  std::vector<uint8_t> finish() const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> bytes;
    float scale;
  };
  std::vector<uint8_t> meta_;
  uint32_t meta_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace qtf::format
