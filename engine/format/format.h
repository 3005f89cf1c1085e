// The .qtf model file (docs/format.md): constants shared by the reader and the writer.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qtf::format {

constexpr char kMagic[8] = {'Q', 'T', 'F', 'M', 'O', 'D', 'E', 'L'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 80;
constexpr size_t kChecksumOffset = 72;
constexpr uint64_t kAlign = 64;
constexpr uint32_t kMaxEntries = 4096;     // per section; keeps verification O(n^2) small
constexpr uint32_t kMaxNameBytes = 255;
constexpr uint32_t kMaxStringBytes = 1u << 24;
constexpr uint32_t kMaxArrayCount = 1u << 24;
constexpr int kMaxDims = 4;

// i8: value = scale * q with the one scale of the table entry; q8: i8 with one f32 scale per row (a row
// is the last dimension), stored in the tensor's bytes before its values; q4: GGUF's Q4_0 blocks along
// each row, the last block of a row padded (docs/format.md; the layout: kQ4Block in kernels/kernels.h);
// q3: 3-bit blocks of 32 along each row, likewise (kQ3Block in kernels/kernels.h); q4s, q3s: q4's and q3's
// blocks with their scales coded per group of 8 blocks (kSGroup in kernels/kernels.h).
enum class DType : uint8_t { f32 = 0, f16 = 1, i8 = 2, q8 = 3, q4 = 4, q3 = 5, q4s = 6, q3s = 7 };
constexpr uint64_t kMaxDType = 7;
enum class MetaType : uint8_t { i64 = 1, f64 = 2, str = 3, i64_array = 4, f64_array = 5, str_array = 6 };

inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : t == DType::f16 ? 2 : 1; }  // per value (not blocks)
// Bytes of a tensor of `elements` values in `rows` rows (rows > 0 dividing elements): the values, plus q8's
// scales; q4: rows * ceil(cols / 32) blocks of 18 bytes; q3: of 14 bytes; q4s (q3s): those NB blocks
// of 16 (12) bytes, plus 8 per group of 8 of them (ceil(NB / 8) groups). False on overflow.
bool tensor_bytes(DType t, uint64_t elements, uint64_t rows, uint64_t* bytes);
const char* dtype_name(DType t);
const char* meta_type_name(MetaType t);

// CRC-32 (zlib/PNG polynomial), incremental: crc = crc32_update(crc, p, n) starting from 0.
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
// The same function, portable code only (the reference the fast paths are tested against).
uint32_t crc32_update_portable(uint32_t crc, const void* data, size_t n);
// The same function by a chosen path (x86-64: 128-bit and 512-bit carry-less multiply folding), for the
// tests that compare each path this CPU runs with the portable one. A path the CPU lacks must not be used.
enum class CrcPath { portable, pclmul, vpclmul };
bool crc32_path_available(CrcPath path);
uint32_t crc32_update_with(CrcPath path, uint32_t crc, const void* data, size_t n);

// True when [p, p+n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool utf8_valid(const char* p, size_t n);

// IEEE half -> float (qtf::f16_to_f32, kernels.h).
float f16_to_f32(uint16_t h);

}  // namespace qtf::format
