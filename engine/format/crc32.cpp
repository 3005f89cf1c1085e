// CRC-32 of the model file (docs/format.md "Checksum"). The loader checks every byte of a file on each
// load, so this is most of a large model's load time: a portable slicing-by-8 version, and on x86-64
// carry-less multiply folding, 128-bit (PCLMULQDQ) or 512-bit (VPCLMULQDQ with AVX-512), the best the
// CPU has chosen at run time. All compute the same function; tests/format compares every path the CPU
// runs with the portable one on every length and alignment.
#include <cstddef>
#include <cstdint>

#include "format/format.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QTF_CRC_PCLMUL 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace qtf::format {

namespace {
// Slicing-by-8 tables: t[0] is the classic byte table; t[k][b] is the CRC of byte b followed by k zero
// bytes, so eight input bytes are folded in one step (about 6x the byte-at-a-time speed; the loader
// checks every byte of a model file, so this is most of a large model's load time).
struct Crc32Tables {
  uint32_t t[8][256];
  constexpr Crc32Tables() : t() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  }
};
constexpr Crc32Tables kCrc;  // 8 KiB, in flash on firmware targets
}  // namespace

uint32_t crc32_update_portable(uint32_t crc, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = crc ^ 0xFFFFFFFFu;
  for (; n >= 8; n -= 8, p += 8) {  // bytes assembled little-endian by hand: any alignment, any host
    uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
    c = kCrc.t[7][lo & 0xFF] ^ kCrc.t[6][(lo >> 8) & 0xFF] ^ kCrc.t[5][(lo >> 16) & 0xFF] ^ kCrc.t[4][lo >> 24] ^
        kCrc.t[3][hi & 0xFF] ^ kCrc.t[2][(hi >> 8) & 0xFF] ^ kCrc.t[1][(hi >> 16) & 0xFF] ^ kCrc.t[0][hi >> 24];
  }
  for (; n > 0; --n, ++p) c = kCrc.t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}


#if QTF_CRC_PCLMUL
namespace {
// Folding with carry-less products (Intel, "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
// 2009), for the bit-reflected polynomial 0xEDB88320: four 128-bit lanes folded 64 bytes at a time, then
// into one lane, then 128 -> 64 -> 32 bits and a Barrett reduction. The constants are x^k mod P
// (bit-reflected, shifted left by one) for the fold distances k used below, and P and floor(x^64 / P).
#define QTF_PCLMUL_FN __attribute__((target("pclmul,sse4.1")))
QTF_PCLMUL_FN inline __m128i load16(const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); }
// x folded forward by the distance k encodes, plus the next 16 bytes.
QTF_PCLMUL_FN inline __m128i fold16(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

// The last 64 bytes' four lanes (x1 first in memory) folded into one, then the remaining 16-byte blocks
// of p[0, n) (n a multiple of 16), then 128 -> 64 -> 32 bits and Barrett. Returns the register.
QTF_PCLMUL_FN uint32_t crc32_finish_lanes(__m128i x1, __m128i x2, __m128i x3, __m128i x4, const uint8_t* p, size_t n) {
  const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);  // x^(128-32), x^(128+32)
  const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124LL);                 // x^64
  const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);  // floor(x^64 / P), P
  const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
  x1 = fold16(x1, k3k4, x2);
  x1 = fold16(x1, k3k4, x3);
  x1 = fold16(x1, k3k4, x4);
  for (; n >= 16; n -= 16, p += 16) x1 = fold16(x1, k3k4, load16(p));
  // 128 -> 64 bits (appending 32 zero bits), then 64 -> 32, then Barrett.
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(k3k4, x1, 0x01));
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), k5, 0x00));
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, mask32), poly, 0x00);
  return (uint32_t)_mm_extract_epi32(_mm_xor_si128(t, x1), 1);
}

QTF_PCLMUL_FN uint32_t crc32_fold_pclmul(uint32_t c, const uint8_t* p, size_t n) {
  // n >= 64, a multiple of 16. c is the running (pre-inverted) register.
  const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);  // x^(512-32), x^(512+32)
  __m128i x1 = _mm_xor_si128(load16(p), _mm_cvtsi32_si128((int)c));
  __m128i x2 = load16(p + 16), x3 = load16(p + 32), x4 = load16(p + 48);
  p += 64;
  n -= 64;
  for (; n >= 64; n -= 64, p += 64) {
    x1 = fold16(x1, k1k2, load16(p));
    x2 = fold16(x2, k1k2, load16(p + 16));
    x3 = fold16(x3, k1k2, load16(p + 32));
    x4 = fold16(x4, k1k2, load16(p + 48));
  }
  return crc32_finish_lanes(x1, x2, x3, x4, p, n);
}

// The same folding four 128-bit lanes per instruction (VPCLMULQDQ on 512-bit registers, AVX-512 CPUs
// since Ice Lake / Zen 4): four registers fold 256 bytes per step, about 3x the 128-bit loop's speed.
#define QTF_VPCLMUL_FN __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1")))
QTF_VPCLMUL_FN inline __m512i fold64(__m512i x, __m512i k, __m512i next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11), next,
                                   0x96);  // a ^ b ^ c
}

QTF_VPCLMUL_FN uint32_t crc32_fold_vpclmul(uint32_t c, const uint8_t* p, size_t n) {
  // n >= 256, a multiple of 16.
  // (Spelled out per lane: GCC 12's _mm512_broadcast_i32x4 trips -Wuninitialized.)
  const long long h2048 = 0x01322d1430LL, l2048 = 0x011542778aLL;  // x^(2048-32), x^(2048+32)
  const long long h512 = 0x01c6e41596LL, l512 = 0x0154442bd4LL;    // x^(512-32), x^(512+32)
  const __m512i k2048 = _mm512_set_epi64(h2048, l2048, h2048, l2048, h2048, l2048, h2048, l2048);
  const __m512i k512 = _mm512_set_epi64(h512, l512, h512, l512, h512, l512, h512, l512);
  __m512i z0 = _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128((int)c), 0));
  __m512i z1 = _mm512_loadu_si512(p + 64), z2 = _mm512_loadu_si512(p + 128), z3 = _mm512_loadu_si512(p + 192);
  p += 256;
  n -= 256;
  for (; n >= 256; n -= 256, p += 256) {
    z0 = fold64(z0, k2048, _mm512_loadu_si512(p));
    z1 = fold64(z1, k2048, _mm512_loadu_si512(p + 64));
    z2 = fold64(z2, k2048, _mm512_loadu_si512(p + 128));
    z3 = fold64(z3, k2048, _mm512_loadu_si512(p + 192));
  }
  z0 = fold64(z0, k512, z1);
  z0 = fold64(z0, k512, z2);
  z0 = fold64(z0, k512, z3);
  for (; n >= 64; n -= 64, p += 64) z0 = fold64(z0, k512, _mm512_loadu_si512(p));
  alignas(64) __m128i lane[4];  // (through memory: GCC 12's _mm512_extracti32x4_epi32 trips -Wuninitialized)
  _mm512_store_si512(lane, z0);
  return crc32_finish_lanes(lane[0], lane[1], lane[2], lane[3], p, n);
}

bool cpu_has_pclmul() {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 1)) && (c & (1u << 19));  // PCLMULQDQ, SSE4.1
}
}  // namespace
#endif

bool crc32_path_available(CrcPath path) {
  switch (path) {
    case CrcPath::portable: return true;
#if QTF_CRC_PCLMUL
    case CrcPath::pclmul: return cpu_has_pclmul();
    // libgcc's check includes the OS saving the 512-bit registers.
    case CrcPath::vpclmul: return cpu_has_pclmul() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq");
#endif
    default: return false;
  }
}

uint32_t crc32_update_with(CrcPath path, uint32_t crc, const void* data, size_t n) {
#if QTF_CRC_PCLMUL
  const uint8_t* p = static_cast<const uint8_t*>(data);
  if ((path == CrcPath::vpclmul && n >= 256) || (path == CrcPath::pclmul && n >= 64)) {
    size_t body = n & ~size_t(15);
    uint32_t c = crc ^ 0xFFFFFFFFu;
    c = (path == CrcPath::vpclmul ? crc32_fold_vpclmul(c, p, body) : crc32_fold_pclmul(c, p, body)) ^ 0xFFFFFFFFu;
    return crc32_update_portable(c, p + body, n - body);
  }
  if (path == CrcPath::vpclmul && n >= 64) return crc32_update_with(CrcPath::pclmul, crc, data, n);
#else
  (void)path;
#endif
  return crc32_update_portable(crc, data, n);
}

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
  static const CrcPath best = crc32_path_available(CrcPath::vpclmul) ? CrcPath::vpclmul
                              : crc32_path_available(CrcPath::pclmul)  ? CrcPath::pclmul
                                                                       : CrcPath::portable;
  return crc32_update_with(best, crc, data, n);
}

}  // namespace qtf::format
