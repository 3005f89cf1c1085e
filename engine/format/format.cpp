#include "format/format.h"

#include "kernels/kernels.h"

#include <cstring>

namespace qtf::format {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::i8: return "i8";
    case DType::q8: return "q8";
    case DType::q4: return "q4";
    case DType::q3: return "q3";
    case DType::q4s: return "q4s";
    case DType::q3s: return "q3s";
  }
  return "?";
}

bool tensor_bytes(DType t, uint64_t elements, uint64_t rows, uint64_t* bytes) {
  if (t == DType::q4 || t == DType::q3 || t == DType::q4s || t == DType::q3s) {  // all in blocks of 32 values
    static_assert(kQ4Block == kQ3Block, "one block length");
    const bool sub = t == DType::q4s || t == DType::q3s;
    const uint64_t block_bytes = t == DType::q4 ? kQ4BlockBytes : t == DType::q3 ? kQ3BlockBytes : sblock_bytes(t == DType::q3s);
    if (rows == 0) return false;
    const uint64_t cols = elements / rows, blocks = cols / kQ4Block + (cols % kQ4Block != 0);
    if (blocks == 0) return *bytes = 0, true;
    if (blocks > UINT64_MAX / block_bytes || rows > UINT64_MAX / (blocks * block_bytes)) return false;
    const uint64_t all = rows * blocks, groups = all / kSGroup + (all % kSGroup != 0);
    const uint64_t headers = sub ? groups * kSGroupHeader : 0;  // < all + 8: no overflow
    if (all * block_bytes > UINT64_MAX - headers) return false;
    *bytes = all * block_bytes + headers;
    return true;
  }
  const uint64_t size = dtype_size(t);
  if (elements > UINT64_MAX / size) return false;
  uint64_t n = elements * size;
  if (t == DType::q8) {
    if (rows > (UINT64_MAX - n) / 4) return false;
    n += 4 * rows;
  }
  *bytes = n;
  return true;
}

const char* meta_type_name(MetaType t) {
  switch (t) {
    case MetaType::i64: return "i64";
    case MetaType::f64: return "f64";
    case MetaType::str: return "str";
    case MetaType::i64_array: return "i64[]";
    case MetaType::f64_array: return "f64[]";
    case MetaType::str_array: return "str[]";
  }
  return "?";
}

bool utf8_valid(const char* s, size_t n) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(s);
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

float f16_to_f32(uint16_t h) { return qtf::f16_to_f32(h); }

}  // namespace qtf::format
