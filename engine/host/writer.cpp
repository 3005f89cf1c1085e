#include "host/writer.h"

#include <cstdlib>
#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace qtf::format {
namespace {

void put(std::vector<uint8_t>* out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out->push_back((uint8_t)(v >> (8 * i)));
}
void put_at(std::vector<uint8_t>* out, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) (*out)[at + i] = (uint8_t)(v >> (8 * i));
}
void put_str(std::vector<uint8_t>* out, const std::string& s) {
  put(out, s.size(), 4);
  out->insert(out->end(), s.begin(), s.end());
}
uint64_t f64_bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

}  // namespace

void Writer::add_i64(const std::string& key, int64_t v) {
  put_str(&meta_, key);
  put(&meta_, (uint8_t)MetaType::i64, 1);
  put(&meta_, (uint64_t)v, 8);
  ++meta_count_;
}

void Writer::add_f64(const std::string& key, double v) {
  put_str(&meta_, key);
  put(&meta_, (uint8_t)MetaType::f64, 1);
  put(&meta_, f64_bits(v), 8);
  ++meta_count_;
}

void Writer::add_str(const std::string& key, const std::string& v) {
  put_str(&meta_, key);
  put(&meta_, (uint8_t)MetaType::str, 1);
  put_str(&meta_, v);
  ++meta_count_;
}

void Writer::add_i64_array(const std::string& key, const std::vector<int64_t>& v) {
  put_str(&meta_, key);
  put(&meta_, (uint8_t)MetaType::i64_array, 1);
  put(&meta_, v.size(), 4);
  for (int64_t x : v) put(&meta_, (uint64_t)x, 8);
  ++meta_count_;
}

void Writer::add_f64_array(const std::string& key, const std::vector<double>& v) {
  put_str(&meta_, key);
  put(&meta_, (uint8_t)MetaType::f64_array, 1);
  put(&meta_, v.size(), 4);
  for (double x : v) put(&meta_, f64_bits(x), 8);
  ++meta_count_;
}

void Writer::add_str_array(const std::string& key, const std::vector<std::string>& v) {
  put_str(&meta_, key);
  put(&meta_, (uint8_t)MetaType::str_array, 1);
  put(&meta_, v.size(), 4);
  for (const std::string& s : v) put_str(&meta_, s);
  ++meta_count_;
}

void Writer::add_meta(const MetaEntry& e) {
  const std::string key(e.key.data, e.key.size);
  int64_t i;
  double d;
  Str s;
  std::vector<int64_t> iv;
  std::vector<double> dv;
  std::vector<std::string> sv;
  switch (e.type) {
    case MetaType::i64: e.as_i64(&i); add_i64(key, i); break;
    case MetaType::f64: e.as_f64(&d); add_f64(key, d); break;
    case MetaType::str: e.as_str(&s); add_str(key, std::string(s.data, s.size)); break;
    case MetaType::i64_array:
      for (uint32_t k = 0; e.i64_at(k, &i); ++k) iv.push_back(i);
      add_i64_array(key, iv);
      break;
    case MetaType::f64_array:
      for (uint32_t k = 0; e.f64_at(k, &d); ++k) dv.push_back(d);
      add_f64_array(key, dv);
      break;
    case MetaType::str_array: {
      const uint8_t* q = e.value + 4;  // sequential walk (str_at is O(k))
      for (uint32_t k = 0; k < e.count; ++k) {
        uint32_t len;
        std::memcpy(&len, q, 4);
        sv.emplace_back(reinterpret_cast<const char*>(q + 4), len);
        q += 4 + len;
      }
      add_str_array(key, sv);
      break;
    }
  }
}

void Writer::add_tensor(const std::string& name, DType dtype, const std::vector<uint64_t>& dims, const void* data,
                        float scale) {
  uint64_t elements = 1, n = 0;
  for (uint64_t d : dims) elements *= d;
  tensor_bytes(dtype, elements, dims.empty() ? 0 : elements / dims.back(), &n);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  Tensor t{name, dtype, dims, std::vector<uint8_t>(p, p + n), scale};
  t.size = n;
  tensors_.push_back(std::move(t));
}

void Writer::add_q8(const std::string& name, const std::vector<uint64_t>& dims, const float* scales,
                    const int8_t* values) {
  uint64_t elements = 1;
  for (uint64_t d : dims) elements *= d;
  const uint64_t rows = dims.empty() ? 0 : elements / dims.back();
  std::vector<uint8_t> bytes(4 * rows + elements);
  std::memcpy(bytes.data(), scales, 4 * rows);
  std::memcpy(bytes.data() + 4 * rows, values, elements);
  Tensor t{name, DType::q8, dims, std::move(bytes), 1.f};
  t.size = t.bytes.size();
  tensors_.push_back(std::move(t));
}

size_t Writer::declare_tensor(const std::string& name, DType dtype, const std::vector<uint64_t>& dims, float scale) {
  uint64_t elements = 1, n = 0;
  for (uint64_t d : dims)
    if (__builtin_mul_overflow(elements, d, &elements)) bad_size_ = true;
  Tensor t{name, dtype, dims, {}, scale};
  if (!tensor_bytes(dtype, elements, dims.empty() || dims.back() == 0 ? 0 : elements / dims.back(), &n)) bad_size_ = true;
  t.size = n;
  t.declared = true;
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

void Writer::layout(std::vector<uint64_t>* offsets, std::vector<uint8_t>* table, uint64_t* data_off,
                    uint64_t* file_size) const {
  // Offsets depend on the table size, which does not depend on offsets: lay out the data afterwards.
  size_t table_size = 0;
  for (const Tensor& t : tensors_) table_size += 4 + t.name.size() + 4 + 8 * t.dims.size() + 8 + 8 + 4;
  const uint64_t table_off = kHeaderSize + meta_.size();
  *data_off = (table_off + table_size + kAlign - 1) / kAlign * kAlign;
  uint64_t at = *data_off;
  offsets->clear();
  for (const Tensor& t : tensors_) {
    offsets->push_back(at);
    at = (at + t.size + kAlign - 1) / kAlign * kAlign;
  }
  *file_size = tensors_.empty() ? *data_off : offsets->back() + tensors_.back().size;
  table->clear();
  table->reserve(table_size);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    put_str(table, t.name);
    put(table, (uint8_t)t.dtype, 1);
    put(table, t.dims.size(), 1);
    put(table, 0, 2);
    for (uint64_t d : t.dims) put(table, d, 8);
    put(table, (*offsets)[i], 8);
    put(table, t.size, 8);
    uint32_t sb;
    std::memcpy(&sb, &t.scale, 4);
    put(table, sb, 4);
  }
}

// Header, metadata and table at the start of out (the checksum field 0), zero up to the data.
void Writer::header(uint8_t* out, uint64_t file_size, uint64_t table_size, uint64_t data_off) const {
  const uint64_t meta_off = kHeaderSize, table_off = meta_off + meta_.size();
  auto at = [&](size_t pos, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out[pos + i] = (uint8_t)(v >> (8 * i));
  };
  std::memset(out, 0, kHeaderSize);
  std::memcpy(out, kMagic, 8);
  at(8, kVersion, 4);
  at(16, file_size, 8);
  at(24, meta_off, 8);
  at(32, meta_.size(), 8);
  at(40, table_off, 8);
  at(48, table_size, 8);
  at(56, data_off, 8);
  at(64, meta_count_, 4);
  at(68, tensors_.size(), 4);
  if (!meta_.empty()) std::memcpy(out + meta_off, meta_.data(), meta_.size());
  std::memset(out + table_off + table_size, 0, data_off - table_off - table_size);
}

std::vector<uint8_t> Writer::finish() const {
  std::vector<uint64_t> offsets;
  std::vector<uint8_t> table;
  uint64_t data_off = 0, file_size = 0;
  layout(&offsets, &table, &data_off, &file_size);
  std::vector<uint8_t> out(file_size, 0);
  header(out.data(), file_size, table.size(), data_off);
  if (!table.empty()) std::memcpy(out.data() + kHeaderSize + meta_.size(), table.data(), table.size());
  for (size_t i = 0; i < tensors_.size(); ++i)  // a declared tensor's bytes stay zero here
    if (!tensors_[i].bytes.empty()) std::memcpy(out.data() + offsets[i], tensors_[i].bytes.data(), tensors_[i].bytes.size());
  put_at(&out, kChecksumOffset, crc32_update(0, out.data(), out.size()), 4);  // checksum bytes are 0 here
  return out;
}

Status Writer::begin(Image* image) {
  std::vector<uint64_t> offsets;
  std::vector<uint8_t> table;
  layout(&offsets, &table, &data_off_, &file_size_);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    tensors_[i].offset = offsets[i];
    // Offsets only grow and every tensor ends inside the file (else a size overflowed 64 bits).
    if (offsets[i] < data_off_ || (i && offsets[i] < offsets[i - 1]) || offsets[i] + tensors_[i].size < offsets[i] ||
        offsets[i] + tensors_[i].size > file_size_)
      bad_size_ = true;
  }
  if (bad_size_ || file_size_ > (uint64_t)SIZE_MAX)
    return Status::error(Err::overflow, "the model's tensors are too large for one image (a size overflows)");
  QTF_TRY(image->allocate((size_t)file_size_));
  base_ = image->data();
  header(base_, file_size_, table.size(), data_off_);
  if (!table.empty()) std::memcpy(base_ + kHeaderSize + meta_.size(), table.data(), table.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    Tensor& t = tensors_[i];
    const uint64_t end = i + 1 < tensors_.size() ? tensors_[i + 1].offset : file_size_;
    std::memset(base_ + t.offset + t.size, 0, (size_t)(end - t.offset - t.size));  // padding
    t.done = !t.declared;
    if (!t.declared) {
      if (t.size) std::memcpy(base_ + t.offset, t.bytes.data(), (size_t)t.size);
      t.bytes = std::vector<uint8_t>();
    }
  }
  crc_ = crc32_update(0, base_, (size_t)data_off_);
  crc_at_ = data_off_;
  crc_next_ = 0;
  advance_crc();
  return Status::success();
}

TensorInfo Writer::tensor_info(size_t i) const {
  const Tensor& t = tensors_[i];
  TensorInfo info;
  info.name.data = t.name.data();
  info.name.size = (uint32_t)t.name.size();
  info.dtype = t.dtype;
  info.ndim = (int)t.dims.size();
  for (int k = 0; k < info.ndim && k < kMaxDims; ++k) info.dims[k] = t.dims[(size_t)k];
  info.offset = t.offset;
  info.size = t.size;
  info.scale = t.scale;
  info.data = base_ + t.offset;
  info.values = info.data;
  if (t.dtype == DType::q8) {
    info.row_scales = reinterpret_cast<const float*>(base_ + t.offset);
    info.values = base_ + t.offset + 4 * info.rows();
  }
  return info;
}

void Writer::advance_crc() {
  while (crc_next_ < tensors_.size() && tensors_[crc_next_].done) {
    const uint64_t end = crc_next_ + 1 < tensors_.size() ? tensors_[crc_next_ + 1].offset : file_size_;
    crc_ = crc32_update(crc_, base_ + crc_at_, (size_t)(end - crc_at_));
    crc_at_ = end;
    ++crc_next_;
  }
}

void Writer::done(size_t i) {
  tensors_[i].done = true;
  advance_crc();
}

bool Writer::end() {
  advance_crc();
  if (crc_next_ != tensors_.size() || crc_at_ != file_size_) return false;
  for (int k = 0; k < 4; ++k) base_[kChecksumOffset + k] = (uint8_t)(crc_ >> (8 * k));
  return true;
}

// ---- Image ----

Image& Image::operator=(Image&& o) noexcept {
  if (this != &o) {
    clear();
    data_ = o.data_, size_ = o.size_;
    o.data_ = nullptr, o.size_ = 0;
  }
  return *this;
}

void Image::clear() {
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
}

Status Image::allocate(size_t size) {
  clear();
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t align = size >= kHuge ? kHuge : 64;  // huge pages: far fewer page faults writing it
  const size_t rounded = size ? (size + align - 1) / align * align : align;
  void* p = nullptr;
  if (rounded < size || posix_memalign(&p, align, rounded) != 0 || p == nullptr)
    return Status::error(Err::no_memory, "cannot allocate %lu bytes for the model image", (unsigned long)size);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHuge) madvise(p, rounded, MADV_HUGEPAGE);  // advice only
#endif
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  return Status::success();
}

}  // namespace qtf::format
