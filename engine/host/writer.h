// Writer of .qtf files (host side: tools, tests, converters; it allocates, so it is not part of the core).
// Produces exactly docs/format.md v1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

#include "format/format.h"
#include "format/reader.h"

namespace qtf::format {

// A whole .qtf image in one 64-byte aligned heap block (the kernels read tensors in place), allocated
// once at its final size: what the importers build (Writer::begin) and what a converted model binds.
class Image {
 public:
  Image() = default;
  ~Image() { clear(); }
  Image(Image&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr, o.size_ = 0; }
  Image& operator=(Image&& o) noexcept;
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
  // size bytes, not initialised (large images are backed by transparent huge pages where the OS has them).
  Status allocate(size_t size);
  void clear();
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const uint8_t* begin() const { return data_; }
  const uint8_t* end() const { return data_ + size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

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

  // Writing in place (the importers: each tensor written once, straight into the final image).
  // declare_tensor names a tensor whose bytes come later and returns its index. begin() lays the file
  // out (every tensor's offset, the metadata, the table), allocates *image once at its final size and
  // writes everything but the declared tensors' bytes (zero padding included; the checksum field 0).
  // The caller then writes each declared tensor at tensor_data(i) (tensor_size(i) bytes) and calls
  // done(i): the checksum runs over the file in order as far as its tensors are done, so a tensor just
  // written is read back while in cache. end() writes the checksum; false if a tensor was not done.
  // The image must not move between begin() and end() (an Image's block never moves, even when the Image
  // object is moved).
  size_t declare_tensor(const std::string& name, DType dtype, const std::vector<uint64_t>& dims, float scale = 1.f);
  Status begin(Image* image);
  uint8_t* tensor_data(size_t i) const { return base_ + tensors_[i].offset; }
  uint64_t tensor_size(size_t i) const { return tensors_[i].size; }
  // The table entry of tensor i as the reader would give it, pointing into the image (after begin()).
  TensorInfo tensor_info(size_t i) const;
  void done(size_t i);
  bool end();
  size_t tensor_count() const { return tensors_.size(); }

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> bytes;  // empty for a declared tensor
    float scale;
    uint64_t size = 0;    // bytes in the file
    uint64_t offset = 0;  // set by layout()
    bool declared = false, done = false;
  };
  // Offsets of every tensor, the table's bytes, the data offset and the file size.
  void layout(std::vector<uint64_t>* offsets, std::vector<uint8_t>* table, uint64_t* data_off, uint64_t* file_size) const;
  void header(uint8_t* out, uint64_t file_size, uint64_t table_size, uint64_t data_off) const;
  void advance_crc();
  std::vector<uint8_t> meta_;
  uint32_t meta_count_ = 0;
  std::vector<Tensor> tensors_;
  // In-place writing state.
  uint8_t* base_ = nullptr;
  uint64_t file_size_ = 0, data_off_ = 0, crc_at_ = 0;  // the checksum covers [0, crc_at_)
  size_t crc_next_ = 0;                                // the first tensor not yet folded in
  uint32_t crc_ = 0;
  bool bad_size_ = false;  // a declared tensor's byte size overflowed
};

}  // namespace qtf::format
