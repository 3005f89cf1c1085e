#include "host/writer.h"

#include <cstring>

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
  tensors_.push_back(Tensor{name, dtype, dims, std::vector<uint8_t>(p, p + n), scale});
}

void Writer::add_q8(const std::string& name, const std::vector<uint64_t>& dims, const float* scales,
                    const int8_t* values) {
  uint64_t elements = 1;
  for (uint64_t d : dims) elements *= d;
  const uint64_t rows = dims.empty() ? 0 : elements / dims.back();
  std::vector<uint8_t> bytes(4 * rows + elements);
  std::memcpy(bytes.data(), scales, 4 * rows);
  std::memcpy(bytes.data() + 4 * rows, values, elements);
  tensors_.push_back(Tensor{name, DType::q8, dims, std::move(bytes), 1.f});
}

std::vector<uint8_t> Writer::finish() const {
  std::vector<uint8_t> table;
  // Offsets depend on the table size, which does not depend on offsets: lay out the data afterwards.
  size_t table_size = 0;
  for (const Tensor& t : tensors_) table_size += 4 + t.name.size() + 4 + 8 * t.dims.size() + 8 + 8 + 4;
  uint64_t meta_off = kHeaderSize, table_off = meta_off + meta_.size();
  uint64_t data_off = (table_off + table_size + kAlign - 1) / kAlign * kAlign;
  uint64_t at = data_off;
  std::vector<uint64_t> offsets;
  for (const Tensor& t : tensors_) {
    offsets.push_back(at);
    at = (at + t.bytes.size() + kAlign - 1) / kAlign * kAlign;
  }
  uint64_t file_size = tensors_.empty() ? data_off : offsets.back() + tensors_.back().bytes.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    put_str(&table, t.name);
    put(&table, (uint8_t)t.dtype, 1);
    put(&table, t.dims.size(), 1);
    put(&table, 0, 2);
    for (uint64_t d : t.dims) put(&table, d, 8);
    put(&table, offsets[i], 8);
    put(&table, t.bytes.size(), 8);
    uint32_t sb;
    std::memcpy(&sb, &t.scale, 4);
    put(&table, sb, 4);
  }

  std::vector<uint8_t> out(file_size, 0);
  std::memcpy(out.data(), kMagic, 8);
  put_at(&out, 8, kVersion, 4);
  put_at(&out, 16, file_size, 8);
  put_at(&out, 24, meta_off, 8);
  put_at(&out, 32, meta_.size(), 8);
  put_at(&out, 40, table_off, 8);
  put_at(&out, 48, table.size(), 8);
  put_at(&out, 56, data_off, 8);
  put_at(&out, 64, meta_count_, 4);
  put_at(&out, 68, tensors_.size(), 4);
  if (!meta_.empty()) std::memcpy(out.data() + meta_off, meta_.data(), meta_.size());
  if (!table.empty()) std::memcpy(out.data() + table_off, table.data(), table.size());
  for (size_t i = 0; i < tensors_.size(); ++i)
    std::memcpy(out.data() + offsets[i], tensors_[i].bytes.data(), tensors_[i].bytes.size());
  put_at(&out, kChecksumOffset, crc32_update(0, out.data(), out.size()), 4);  // checksum bytes are 0 here
  return out;
}

}  // namespace qtf::format
