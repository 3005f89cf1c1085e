// A small GGUF writer for tests (llama.cpp's format, docs: ggml/docs/gguf.md): metadata of every value
// type, tensors of raw bytes, the data section aligned. Deliberately loose: tests also use it to make
// hostile files (wrong counts, offsets, types), patching the bytes afterwards.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace qtf::testing {

class GgufWriter {
 public:
  enum Type : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 };
  uint32_t version = 3;
  uint64_t alignment = 32;  // how the data section is laid out (general.alignment is a key of its own)

  void u32(const std::string& k, uint32_t v) { key(k, U32), put(v, 4); }
  void i32(const std::string& k, int32_t v) { key(k, I32), put((uint32_t)v, 4); }
  void u64(const std::string& k, uint64_t v) { key(k, U64), put(v, 8); }
  void f32(const std::string& k, float v) { key(k, F32), put(bits(v), 4); }
  void boolean(const std::string& k, bool v) { key(k, BOOL), put(v ? 1 : 0, 1); }
  void str(const std::string& k, const std::string& v) { key(k, STR), put_str(v); }
  void strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, ARR), put(STR, 4), put(v.size(), 8);
    for (const std::string& s : v) put_str(s);
  }
  void f32s(const std::string& k, const std::vector<float>& v) {
    key(k, ARR), put(F32, 4), put(v.size(), 8);
    for (float x : v) put(bits(x), 4);
  }
  void i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, ARR), put(I32, 4), put(v.size(), 8);
    for (int32_t x : v) put((uint32_t)x, 4);
  }
  void u32s(const std::string& k, const std::vector<uint32_t>& v) {
    key(k, ARR), put(U32, 4), put(v.size(), 8);
    for (uint32_t x : v) put(x, 4);
  }
  // A tensor: ne in ggml order (ne[0] varies fastest), type a ggml type id, bytes as stored.
  void tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    tensors_.push_back({name, ne, type, std::vector<uint8_t>(p, p + n)});
  }
  // The file; table_end (optional): where the tensor table ends (the data section starts at its next
  // multiple of the alignment).
  std::vector<uint8_t> finish(size_t* table_end = nullptr) const {
    std::vector<uint8_t> out;
    auto put_to = [&](uint64_t v, int n) {
      for (int i = 0; i < n; ++i) out.push_back((uint8_t)(v >> (8 * i)));
    };
    out.reserve(64 + kv_.size());
    put_to(0x46554747, 4);  // "GGUF"
    put_to(version, 4);
    put_to(tensors_.size(), 8);
    put_to(n_kv_, 8);
    out.insert(out.end(), kv_.begin(), kv_.end());
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const T& t : tensors_) {
      put_to(t.name.size(), 8);
      out.insert(out.end(), t.name.begin(), t.name.end());
      put_to(t.ne.size(), 4);
      for (uint64_t d : t.ne) put_to(d, 8);
      put_to(t.type, 4);
      put_to(offset, 8);
      offsets.push_back(offset);
      offset = (offset + t.bytes.size() + alignment - 1) / alignment * alignment;
    }
    if (table_end) *table_end = out.size();
    const size_t data = (out.size() + alignment - 1) / alignment * alignment;
    if (!tensors_.empty()) out.resize(data, 0);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.resize(data + offsets[i], 0);
      out.insert(out.end(), tensors_[i].bytes.begin(), tensors_[i].bytes.end());
    }
    return out;
  }

 private:
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::vector<uint8_t> bytes;
  };
  static uint32_t bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  }
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) kv_.push_back((uint8_t)(v >> (8 * i)));
  }
  void put_str(const std::string& s) {
    put(s.size(), 8);
    kv_.insert(kv_.end(), s.begin(), s.end());
  }
  void key(const std::string& k, uint32_t type) {
    put_str(k);
    put(type, 4);
    ++n_kv_;
  }
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  std::vector<T> tensors_;
};

}  // namespace qtf::testing
