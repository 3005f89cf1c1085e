// GGUF import (engine/import/gguf.cpp): files built here with tests/support/gguf_writer.h. The tiny Llama
// fixture (tests/fixtures/llama2c_tiny) as a GGUF must import to the same tensors and logits, as llama
// and as qwen2 (rotate-half q/k rows, biases); every tensor type imports the values its blocks hold
// (block encoders written here from the layouts, independently of the importer's decoders); hostile
// files get one clear line each, never a crash.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <unistd.h>

#include "host/quantize.h"
#include "import/gguf.h"
#include "import/third_party/ggml_iq_grids.h"
#include "qtf.h"
#include "import_support.h"
#include "support/json_lite.h"

using namespace qtf;
using qtf::testing::expect_error;
using qtf::testing::worst_logit_error;
using G = qtf::testing::GgufWriter;

namespace {

// ---- block encoders (the layouts of ggml-common.h, packed here; expected values from the integers) ----

struct Encoded {
  uint32_t type;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // what the block holds, exactly
};

void put16(std::vector<uint8_t>* b, uint16_t v) { b->push_back((uint8_t)v), b->push_back((uint8_t)(v >> 8)); }
float f16(uint16_t h) { return format::f16_to_f32(h); }

Encoded enc_f32(const std::vector<float>& x) {
  Encoded e{import::kF32, std::vector<uint8_t>(4 * x.size()), x};
  std::memcpy(e.bytes.data(), x.data(), e.bytes.size());
  return e;
}
Encoded enc_f16(const std::vector<float>& x) {
  Encoded e{import::kF16, {}, {}};
  for (float v : x) put16(&e.bytes, host::f32_to_f16(v)), e.values.push_back(f16(host::f32_to_f16(v)));
  return e;
}
Encoded enc_bf16(const std::vector<float>& x) {
  Encoded e{import::kBF16, {}, {}};
  for (float v : x) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    put16(&e.bytes, (uint16_t)(bits >> 16));  // truncated: the value is then exactly bits & 0xffff0000
    bits &= 0xFFFF0000u;
    float t;
    std::memcpy(&t, &bits, 4);
    e.values.push_back(t);
  }
  return e;
}
// Q8_0: blocks of 32 = f16 d, 32 x int8; x = q * d.
Encoded enc_q8_0(const std::vector<float>& x) {
  Encoded e{import::kQ8_0, {}, {}};
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b + j]));
    const uint16_t dh = host::f32_to_f16(amax / 127 + 1e-3f);
    put16(&e.bytes, dh);
    for (int j = 0; j < 32; ++j) {
      const int q = (int)std::lround(x[b + j] / f16(dh));
      e.bytes.push_back((uint8_t)(int8_t)q);
      e.values.push_back((float)q * f16(dh));
    }
  }
  return e;
}
// Q4_0: blocks of 32 = f16 d, 16 bytes: byte j = q[j] | q[j + 16] << 4; x = (q - 8) * d.
Encoded enc_q4_0(const std::vector<float>& x) {
  Encoded e{import::kQ4_0, {}, {}};
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b + j]));
    const uint16_t dh = host::f32_to_f16(amax / 7 + 1e-3f);
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = std::min(15, std::max(0, (int)std::lround(x[b + j] / f16(dh)) + 8));
    put16(&e.bytes, dh);
    for (int j = 0; j < 16; ++j) e.bytes.push_back((uint8_t)(q[j] | (q[j + 16] << 4)));
    for (int j = 0; j < 32; ++j) e.values.push_back((float)(q[j] - 8) * f16(dh));
  }
  return e;
}
// Q4_1 / Q5_0 / Q5_1: blocks of 32 = f16 d, [f16 m,] [4 bytes: bit j = the fifth bit of q[j]], 16 bytes:
// byte j = low 4 bits of q[j] | of q[j + 16] << 4; x = (q - 16) * d (Q5_0) or q * d + m.
Encoded enc_q4_1_q5(uint32_t type, const std::vector<float>& x) {
  Encoded e{type, {}, {}};
  const bool five = type != import::kQ4_1, has_min = type != import::kQ5_0;
  const int top = five ? 31 : 15;
  for (size_t b = 0; b < x.size(); b += 32) {
    float lo = x[b], hi = x[b];
    for (int j = 0; j < 32; ++j) lo = std::fmin(lo, x[b + j]), hi = std::fmax(hi, x[b + j]);
    if (!has_min) hi = std::fmax(std::fabs(lo), std::fabs(hi)), lo = -hi;
    const uint16_t dh = host::f32_to_f16((hi - lo) / (float)top + 1e-3f), mh = host::f32_to_f16(lo);
    const float d = f16(dh), m = has_min ? f16(mh) : 0.f;
    int q[32];
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) {
      q[j] = std::min(top, std::max(0, (int)std::lround((x[b + j] - (has_min ? m : lo)) / d)));
      qh |= (uint32_t)((q[j] >> 4) & 1) << j;
    }
    put16(&e.bytes, dh);
    if (has_min) put16(&e.bytes, mh);
    if (five)
      for (int k = 0; k < 4; ++k) e.bytes.push_back((uint8_t)(qh >> (8 * k)));
    for (int j = 0; j < 16; ++j) e.bytes.push_back((uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4)));
    for (int j = 0; j < 32; ++j) e.values.push_back(has_min ? (float)q[j] * d + m : (float)(q[j] - 16) * d);
  }
  return e;
}
// Q4_K: super-blocks of 256 = f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32,
// 128 bytes of nibbles (sub-blocks 2k and 2k+1 share 32 bytes: low, high); x = d*sc*q - dmin*m.
// Q5_K: the same with 32 bytes after the scales: bit s of byte l = the fifth bit of value l of sub-block s.
Encoded enc_q4_k(const std::vector<float>& x, uint32_t seed, bool five = false) {
  Encoded e{five ? import::kQ5_K : import::kQ4_K, {}, {}};
  const int top = five ? 31 : 15;
  std::mt19937 rng(seed);
  for (size_t b = 0; b < x.size(); b += 256) {
    int sc[8], mn[8], q[256];
    for (int s = 0; s < 8; ++s) sc[s] = (int)(rng() % 64), mn[s] = (int)(rng() % 64);
    sc[5] = 63, mn[6] = 63;  // the top bits of the packed scales in use
    const uint16_t dh = host::f32_to_f16(0.01f), mh = host::f32_to_f16(0.005f);
    for (int i = 0; i < 256; ++i) {  // the q that best approximates x with this sub-block's scale and min
      const float dl = f16(dh) * sc[i / 32], ml = f16(mh) * mn[i / 32];
      q[i] = dl > 0 ? std::min(top, std::max(0, (int)std::lround((x[b + i] + ml) / dl))) : (int)(rng() % (top + 1));
    }
    uint8_t pk[12] = {0};
    for (int s = 0; s < 4; ++s) {
      pk[s] = (uint8_t)((sc[s] & 63) | ((sc[s + 4] >> 4) << 6));
      pk[s + 4] = (uint8_t)((mn[s] & 63) | ((mn[s + 4] >> 4) << 6));
      pk[s + 8] = (uint8_t)((sc[s + 4] & 15) | ((mn[s + 4] & 15) << 4));
    }
    put16(&e.bytes, dh), put16(&e.bytes, mh);
    e.bytes.insert(e.bytes.end(), pk, pk + 12);
    if (five)
      for (int l = 0; l < 32; ++l) {
        uint8_t h = 0;
        for (int s = 0; s < 8; ++s) h = (uint8_t)(h | (((q[32 * s + l] >> 4) & 1) << s));
        e.bytes.push_back(h);
      }
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l)
        e.bytes.push_back((uint8_t)((q[64 * k + l] & 15) | ((q[64 * k + 32 + l] & 15) << 4)));
    for (int i = 0; i < 256; ++i) {
      const float dl = f16(dh) * (float)sc[i / 32], ml = f16(mh) * (float)mn[i / 32];
      e.values.push_back(dl * (float)q[i] - ml);
    }
  }
  return e;
}
// Q6_K: super-blocks of 256 = 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 scales (one per
// 16 values), f16 d; x = d * sc * (q - 32). In each half of 128: ql[l] = q[l] | q[l+64] << 4,
// ql[l+32] = q[l+32] | q[l+96] << 4 (low 4 bits), qh[l] = the high 2 bits of q[l], q[l+32], q[l+64], q[l+96].
Encoded enc_q6_k(const std::vector<float>& x, uint32_t seed) {
  Encoded e{import::kQ6_K, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < x.size(); b += 256) {
    int sc[16], q[256];
    for (int s = 0; s < 16; ++s) sc[s] = (int)(rng() % 255) - 127;
    sc[3] = -128;
    const uint16_t dh = host::f32_to_f16(0.002f);
    for (int i = 0; i < 256; ++i) {
      const float dl = f16(dh) * (float)sc[i / 16];
      q[i] = dl != 0 ? std::min(63, std::max(0, (int)std::lround(x[b + i] / dl) + 32)) : (int)(rng() % 64);
    }
    uint8_t ql[128], qh[64];
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const int* y = q + 128 * h;
        ql[64 * h + l] = (uint8_t)((y[l] & 15) | ((y[l + 64] & 15) << 4));
        ql[64 * h + l + 32] = (uint8_t)((y[l + 32] & 15) | ((y[l + 96] & 15) << 4));
        qh[32 * h + l] = (uint8_t)((y[l] >> 4) | ((y[l + 32] >> 4) << 2) | ((y[l + 64] >> 4) << 4) | ((y[l + 96] >> 4) << 6));
      }
    e.bytes.insert(e.bytes.end(), ql, ql + 128);
    e.bytes.insert(e.bytes.end(), qh, qh + 64);
    for (int s = 0; s < 16; ++s) e.bytes.push_back((uint8_t)(int8_t)sc[s]);
    put16(&e.bytes, dh);
    for (int i = 0; i < 256; ++i) e.values.push_back(f16(dh) * (float)sc[i / 16] * (float)(q[i] - 32));
  }
  return e;
}

// The 2 low bits of 256 values as Q2_K and Q3_K store them (ggml's quantize_row_q2_K_ref): byte j/4 + l of
// each half j (0, 128) = q[j+l] | q[j+l+32] << 2 | q[j+l+64] << 4 | q[j+l+96] << 6.
void put_low_bit_pairs(const int* q, std::vector<uint8_t>* out) {
  for (int j = 0; j < 256; j += 128)
    for (int l = 0; l < 32; ++l)
      out->push_back((uint8_t)(q[j + l] | (q[j + l + 32] << 2) | (q[j + l + 64] << 4) | (q[j + l + 96] << 6)));
}
// Q2_K: super-blocks of 256 = 16 bytes (scale | min << 4 per sub-block of 16), 64 bytes of 2-bit q, f16 d,
// f16 dmin; x = d*sc*q - dmin*m; q packed by put_low_bit_pairs.
Encoded enc_q2_k(const std::vector<float>& x, uint32_t seed) {
  Encoded e{import::kQ2_K, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < x.size(); b += 256) {
    int sc[16], mn[16], q[256];
    for (int s = 0; s < 16; ++s) sc[s] = (int)(rng() % 16), mn[s] = (int)(rng() % 16);
    sc[7] = 15, mn[9] = 15;
    const uint16_t dh = host::f32_to_f16(0.02f), mh = host::f32_to_f16(0.01f);
    for (int i = 0; i < 256; ++i) {
      const float dl = f16(dh) * (float)sc[i / 16], ml = f16(mh) * (float)mn[i / 16];
      q[i] = dl > 0 ? std::min(3, std::max(0, (int)std::lround((x[b + i] + ml) / dl))) : (int)(rng() % 4);
    }
    for (int s = 0; s < 16; ++s) e.bytes.push_back((uint8_t)(sc[s] | (mn[s] << 4)));
    put_low_bit_pairs(q, &e.bytes);
    put16(&e.bytes, dh), put16(&e.bytes, mh);
    for (int i = 0; i < 256; ++i) {
      const float dl = f16(dh) * (float)sc[i / 16], ml = f16(mh) * (float)mn[i / 16];
      e.values.push_back(dl * (float)q[i] - ml);
    }
  }
  return e;
}
// Q3_K: super-blocks of 256 = 32 bytes hmask, 64 bytes of low 2 bits, 12 bytes of 6-bit scales (+32), f16 d;
// x = d*(sc-32)*q, q in -4..3. Packed as ggml's quantize_row_q3_K_ref: L = q + 4; where L > 3 the bit
// hm of hmask[m] is set and L -= 4 (m counts 0..31, hm shifts left each time m wraps); the low bits as
// Q2_K's; scale j: low nibble in byte j (j < 8) or high nibble of byte j - 8, its top 2 bits at 2*(j/4) of
// byte 8 + j % 4.
Encoded enc_q3_k(const std::vector<float>& x, uint32_t seed) {
  Encoded e{import::kQ3_K, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < x.size(); b += 256) {
    int sc[16], L[256];
    for (int s = 0; s < 16; ++s) sc[s] = (int)(rng() % 64) - 32;
    sc[2] = 31, sc[13] = -32;
    const uint16_t dh = host::f32_to_f16(0.004f);
    for (int i = 0; i < 256; ++i) {
      const float dl = f16(dh) * (float)sc[i / 16];
      const int q = dl != 0 ? std::min(3, std::max(-4, (int)std::lround(x[b + i] / dl))) : (int)(rng() % 8) - 4;
      L[i] = q + 4;
      e.values.push_back(dl * (float)q);
    }
    uint8_t hmask[32] = {0}, scales[12] = {0};
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < 256; ++j) {
      if (L[j] > 3) hmask[m] = (uint8_t)(hmask[m] | hm), L[j] -= 4;
      if (++m == 32) m = 0, hm = (uint8_t)(hm << 1);
    }
    for (int j = 0; j < 16; ++j) {
      int l = sc[j] + 32;
      if (j < 8) scales[j] = (uint8_t)(l & 0xF);
      else scales[j - 8] = (uint8_t)(scales[j - 8] | ((l & 0xF) << 4));
      l >>= 4;
      scales[j % 4 + 8] = (uint8_t)(scales[j % 4 + 8] | (l << (2 * (j / 4))));
    }
    e.bytes.insert(e.bytes.end(), hmask, hmask + 32);
    put_low_bit_pairs(L, &e.bytes);
    e.bytes.insert(e.bytes.end(), scales, scales + 12);
    put16(&e.bytes, dh);
  }
  return e;
}
// IQ4_NL's 16 levels, written out again here (ggml-common.h kvalues_iq4nl).
const int kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
int nearest_level(float v) {
  int best = 0;
  for (int k = 1; k < 16; ++k)
    if (std::fabs(v - (float)kLevels[k]) < std::fabs(v - (float)kLevels[best])) best = k;
  return best;
}
// IQ4_NL: blocks of 32 = f16 d, 16 bytes as Q4_0's (byte j: index of value j | of value j + 16 << 4);
// x = d * kLevels[index].
Encoded enc_iq4_nl(const std::vector<float>& x) {
  Encoded e{import::kIQ4_NL, {}, {}};
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b + j]));
    const uint16_t dh = host::f32_to_f16(amax / 127 + 1e-4f);
    int c[32];
    for (int j = 0; j < 32; ++j) c[j] = nearest_level(x[b + j] / f16(dh));
    put16(&e.bytes, dh);
    for (int j = 0; j < 16; ++j) e.bytes.push_back((uint8_t)(c[j] | (c[j + 16] << 4)));
    for (int j = 0; j < 32; ++j) e.values.push_back(f16(dh) * (float)kLevels[c[j]]);
  }
  return e;
}
// IQ4_XS: super-blocks of 256 = f16 d, u16 scales_h (2 high bits of sub-block s at bit 2s), 4 bytes
// scales_l (low 4 bits of sub-block s in nibble s % 2 of byte s / 2), 8 x 16 bytes of IQ4_NL-packed
// indices; x = d * (ls - 32) * kLevels[index], ls 6-bit.
Encoded enc_iq4_xs(const std::vector<float>& x, uint32_t seed) {
  Encoded e{import::kIQ4_XS, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < x.size(); b += 256) {
    int ls[8];
    for (int s = 0; s < 8; ++s) ls[s] = (int)(rng() % 64);
    ls[1] = 63, ls[4] = 0;
    const uint16_t dh = host::f32_to_f16(0.0001f);
    uint16_t hi = 0;
    uint8_t lo[4] = {0};
    for (int s = 0; s < 8; ++s) {
      hi = (uint16_t)(hi | ((ls[s] >> 4) << (2 * s)));
      lo[s / 2] = (uint8_t)(lo[s / 2] | ((ls[s] & 15) << (4 * (s % 2))));
    }
    put16(&e.bytes, dh), put16(&e.bytes, hi);
    e.bytes.insert(e.bytes.end(), lo, lo + 4);
    for (int s = 0; s < 8; ++s) {
      const float dl = f16(dh) * (float)(ls[s] - 32);
      int c[32];
      for (int j = 0; j < 32; ++j) c[j] = dl != 0 ? nearest_level(x[b + 32 * s + j] / dl) : (int)(rng() % 16);
      for (int j = 0; j < 16; ++j) e.bytes.push_back((uint8_t)(c[j] | (c[j + 16] << 4)));
      for (int j = 0; j < 32; ++j) e.values.push_back(dl * (float)kLevels[c[j]]);
    }
  }
  return e;
}

// IQ3 kinds: random grid entries, signs and scales (the values are what they decode to, not x's). Value
// k of an entry is its byte k; a set sign bit negates.
float iq3_value(float db, uint32_t entry, int k, bool negative) {
  return db * (float)((entry >> (8 * k)) & 0xFF) * (negative ? -1.f : 1.f);
}
// IQ3_XXS: super-blocks of 256 = f16 d, 64 grid indices (8 a sub-block of 32, 4 values each), then per
// sub-block a u32: 4 x 7 sign bits (the 8th of each group of 8 makes the count of set bits even) and a
// 4-bit scale on top; db = d * (0.5 + scale) * 0.5.
Encoded enc_iq3_xxs(uint32_t seed, size_t n) {
  Encoded e{import::kIQ3_XXS, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < n; b += 256) {
    const uint16_t dh = host::f32_to_f16(0.001f);
    uint8_t qs[64];
    uint32_t aux[8];
    for (int sb = 0; sb < 8; ++sb) {
      const uint32_t scale = sb == 3 ? 15 : rng() % 16;
      aux[sb] = scale << 28;
      const float db = f16(dh) * (0.5f + (float)scale) * 0.5f;
      for (int l = 0; l < 4; ++l) {
        const uint32_t seven = rng() % 128, eight = seven | (uint32_t)(__builtin_popcount(seven) % 2) << 7;
        aux[sb] |= seven << (7 * l);
        qs[8 * sb + 2 * l] = (uint8_t)(rng() % 256), qs[8 * sb + 2 * l + 1] = (uint8_t)(rng() % 256);
        for (int h = 0; h < 2; ++h)
          for (int k = 0; k < 4; ++k)
            e.values.push_back(iq3_value(db, import::ggml_tables::kIq3xxsGrid[qs[8 * sb + 2 * l + h]], k, (eight >> (4 * h + k)) & 1));
      }
    }
    put16(&e.bytes, dh);
    e.bytes.insert(e.bytes.end(), qs, qs + 64);
    for (uint32_t a : aux) put16(&e.bytes, (uint16_t)a), put16(&e.bytes, (uint16_t)(a >> 16));
  }
  return e;
}
// IQ3_S: super-blocks of 256 = f16 d, 64 bytes of grid indices' low 8 bits, 8 bytes of their 9th bits
// (bit k of byte s: index k of sub-block s), 32 bytes of sign bits (a byte per 8 values), 4 bytes of
// 4-bit scales (sub-block 2i in the low nibble of byte i, 2i + 1 in the high one); db = d * (1 + 2 * scale).
Encoded enc_iq3_s(uint32_t seed, size_t n) {
  Encoded e{import::kIQ3_S, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < n; b += 256) {
    const uint16_t dh = host::f32_to_f16(0.0005f);
    uint8_t qs[64], qh[8] = {0}, signs[32], scales[4] = {0};
    for (int sb = 0; sb < 8; ++sb) {
      const int scale = sb == 6 ? 15 : (int)(rng() % 16);
      scales[sb / 2] = (uint8_t)(scales[sb / 2] | scale << (4 * (sb % 2)));
      const float db = f16(dh) * (float)(1 + 2 * scale);
      for (int k = 0; k < 8; ++k) {
        const uint32_t index = rng() % 512;
        qs[8 * sb + k] = (uint8_t)index;
        qh[sb] = (uint8_t)(qh[sb] | (index >> 8) << k);
        if (k % 2 == 0) signs[4 * sb + k / 2] = (uint8_t)(rng() % 256);
        for (int v = 0; v < 4; ++v)
          e.values.push_back(iq3_value(db, import::ggml_tables::kIq3sGrid[index], v, (signs[4 * sb + k / 2] >> (4 * (k % 2) + v)) & 1));
      }
    }
    put16(&e.bytes, dh);
    e.bytes.insert(e.bytes.end(), qs, qs + 64);
    e.bytes.insert(e.bytes.end(), qh, qh + 8);
    e.bytes.insert(e.bytes.end(), signs, signs + 32);
    e.bytes.insert(e.bytes.end(), scales, scales + 4);
  }
  return e;
}

// IQ2 and IQ1 kinds, random codes as above. An IQ2 grid entry holds 8 unsigned magnitudes (byte k: value k),
// an IQ1 entry 8 int8 values -1, 0, 1.
float iq2_value(float db, uint64_t entry, int k, bool negative) {
  return db * (float)((entry >> (8 * k)) & 0xFF) * (negative ? -1.f : 1.f);
}
float iq1_value(float dl, uint64_t entry, int k, float delta) {
  return dl * ((float)(int8_t)((entry >> (8 * k)) & 0xFF) + delta);
}
uint32_t seven_with_parity(uint32_t seven) { return seven | (uint32_t)(__builtin_popcount(seven) % 2) << 7; }
// IQ2_XXS: super-blocks of 256 = f16 d, per sub-block of 32 8 bytes: 4 grid indices, then a u32 of 4 x 7 sign
// bits (the 8th of each 8 makes their count even) and a 4-bit scale; db = d * (0.5 + scale) * 0.25.
// IQ2_XS: f16 d, per 8 values a u16 (9-bit index | 7 sign bits << 9), then a byte per sub-block of two 4-bit
// scales (first 16 values: low nibble). IQ2_S: f16 d, 32 bytes of the indices' low 8 bits, 32 sign bytes,
// 8 bytes of their top 2 bits (bits 2l, 2l + 1 for group l), 8 bytes of scales as IQ2_XS.
Encoded enc_iq2(uint32_t type, uint32_t seed, size_t n) {
  Encoded e{type, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < n; b += 256) {
    const uint16_t dh = host::f32_to_f16(0.002f);
    std::vector<uint8_t> blk;
    put16(&blk, dh);
    uint8_t low[32], signs[32], high[8] = {0}, scales[8];
    uint16_t xs[32];
    for (int sb = 0; sb < 8; ++sb) {
      const uint32_t sc1 = sb == 2 ? 15 : rng() % 16, sc2 = rng() % 16;
      scales[sb] = (uint8_t)(sc1 | sc2 << 4);
      uint32_t aux = sc1 << 28;
      uint8_t idx8[4];
      for (int l = 0; l < 4; ++l) {
        const float db = f16(dh) * (0.5f + (float)(type == import::kIQ2_XXS || l < 2 ? sc1 : sc2)) * 0.25f;
        const uint32_t seven = rng() % 128, eight = type == import::kIQ2_S ? rng() % 256 : seven_with_parity(seven);
        uint64_t entry;
        if (type == import::kIQ2_XXS) {
          idx8[l] = (uint8_t)(rng() % 256), aux |= seven << (7 * l), entry = import::ggml_tables::kIq2xxsGrid[idx8[l]];
        } else if (type == import::kIQ2_XS) {
          const uint32_t i = rng() % 512;
          xs[4 * sb + l] = (uint16_t)(i | seven << 9), entry = import::ggml_tables::kIq2xsGrid[i];
        } else {
          const uint32_t i = rng() % 1024;
          low[4 * sb + l] = (uint8_t)i, signs[4 * sb + l] = (uint8_t)eight;
          high[sb] = (uint8_t)(high[sb] | (i >> 8) << (2 * l)), entry = import::ggml_tables::kIq2sGrid[i];
        }
        for (int k = 0; k < 8; ++k) e.values.push_back(iq2_value(db, entry, k, (eight >> k) & 1));
      }
      if (type == import::kIQ2_XXS) {
        blk.insert(blk.end(), idx8, idx8 + 4);
        put16(&blk, (uint16_t)aux), put16(&blk, (uint16_t)(aux >> 16));
      }
    }
    if (type == import::kIQ2_XS) {
      for (uint16_t q : xs) put16(&blk, q);
      blk.insert(blk.end(), scales, scales + 8);
    } else if (type == import::kIQ2_S) {
      blk.insert(blk.end(), low, low + 32);
      blk.insert(blk.end(), signs, signs + 32);
      blk.insert(blk.end(), high, high + 8);
      blk.insert(blk.end(), scales, scales + 8);
    }
    e.bytes.insert(e.bytes.end(), blk.begin(), blk.end());
  }
  return e;
}
// IQ1_S: super-blocks of 256 = f16 d, 32 bytes of the 11-bit indices' low 8 bits, then per sub-block of 32 a
// u16: the indices' top 3 bits (3l for group l), a 3-bit scale at bit 12, the delta's sign at 15;
// x = d * (2 * scale + 1) * (grid + delta), delta +-0.125. IQ1_M: 32 bytes of low index bits, per sub-block two
// bytes (a nibble per 8 values: 3 top index bits, the delta's sign), then 4 u16 of 3-bit scales (per 16 values:
// sub-block 2k at bits 0, 3, 2k + 1 at bits 6, 9 of u16 k) whose top nibbles are d's f16 bits (nibble k in u16 k).
Encoded enc_iq1(uint32_t type, uint32_t seed, size_t n) {
  Encoded e{type, {}, {}};
  std::mt19937 rng(seed);
  for (size_t b = 0; b < n; b += 256) {
    const uint16_t dh = host::f32_to_f16(0.003f);
    uint8_t qs[32], qhm[16] = {0};
    uint16_t qhs[8] = {0}, scm[4] = {0};
    for (int k = 0; k < 4; ++k) scm[k] = (uint16_t)(((dh >> (4 * k)) & 0xF) << 12);
    for (int sb = 0; sb < 8; ++sb) {
      const uint32_t s1 = sb == 5 ? 7 : rng() % 8, s2 = rng() % 8;
      if (type == import::kIQ1_M) scm[sb / 2] = (uint16_t)(scm[sb / 2] | (s1 | s2 << 3) << (6 * (sb % 2)));
      const bool neg_s = rng() % 2;
      if (type == import::kIQ1_S) qhs[sb] = (uint16_t)(s1 << 12 | (neg_s ? 0x8000u : 0u));
      for (int l = 0; l < 4; ++l) {
        const uint32_t i = rng() % 2048;
        qs[4 * sb + l] = (uint8_t)i;
        float dl, delta;
        if (type == import::kIQ1_S) {
          qhs[sb] = (uint16_t)(qhs[sb] | (i >> 8) << (3 * l));
          dl = f16(dh) * (float)(2 * s1 + 1), delta = neg_s ? -0.125f : 0.125f;
        } else {
          const bool neg = rng() % 2;
          qhm[2 * sb + l / 2] = (uint8_t)(qhm[2 * sb + l / 2] | ((i >> 8) | (neg ? 8u : 0u)) << (4 * (l % 2)));
          dl = f16(dh) * (float)(2 * (l < 2 ? s1 : s2) + 1), delta = neg ? -0.125f : 0.125f;
        }
        for (int k = 0; k < 8; ++k) e.values.push_back(iq1_value(dl, import::ggml_tables::kIq1sGrid[i], k, delta));
      }
    }
    if (type == import::kIQ1_S) {
      put16(&e.bytes, dh);
      e.bytes.insert(e.bytes.end(), qs, qs + 32);
      for (uint16_t q : qhs) put16(&e.bytes, q);
    } else {
      e.bytes.insert(e.bytes.end(), qs, qs + 32);
      e.bytes.insert(e.bytes.end(), qhm, qhm + 16);
      for (uint16_t q : scm) put16(&e.bytes, q);
    }
  }
  return e;
}

Encoded encode(uint32_t type, const std::vector<float>& x, uint32_t seed) {
  switch (type) {
    case import::kF16: return enc_f16(x);
    case import::kBF16: return enc_bf16(x);
    case import::kQ8_0: return enc_q8_0(x);
    case import::kQ4_0: return enc_q4_0(x);
    case import::kQ4_1: case import::kQ5_0: case import::kQ5_1: return enc_q4_1_q5(type, x);
    case import::kQ4_K: return enc_q4_k(x, seed);
    case import::kQ5_K: return enc_q4_k(x, seed, true);
    case import::kQ6_K: return enc_q6_k(x, seed);
    case import::kQ2_K: return enc_q2_k(x, seed);
    case import::kQ3_K: return enc_q3_k(x, seed);
    case import::kIQ4_NL: return enc_iq4_nl(x);
    case import::kIQ4_XS: return enc_iq4_xs(x, seed);
    case import::kIQ3_XXS: return enc_iq3_xxs(seed, x.size());
    case import::kIQ3_S: return enc_iq3_s(seed, x.size());
    case import::kIQ2_XXS: case import::kIQ2_XS: case import::kIQ2_S: return enc_iq2(type, seed, x.size());
    case import::kIQ1_S: case import::kIQ1_M: return enc_iq1(type, seed, x.size());
    default: return enc_f32(x);
  }
}

// ---- a Llama model as a GGUF --------------------------------------------------------------------

// qtf tensor name -> GGUF name.
std::string gguf_name(const std::string& q) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"tok_emb", "token_embd.weight"}, {"lnf.w", "output_norm.weight"}, {"head.w", "output.weight"},
      {"ln1.w", "attn_norm.weight"},    {"ln2.w", "ffn_norm.weight"},    {"attn.q.w", "attn_q.weight"},
      {"attn.k.w", "attn_k.weight"},    {"attn.v.w", "attn_v.weight"},   {"attn.o.w", "attn_output.weight"},
      {"ffn.gate.w", "ffn_gate.weight"}, {"ffn.up.w", "ffn_up.weight"},  {"ffn.down.w", "ffn_down.weight"},
      {"attn.q.b", "attn_q.bias"},      {"attn.k.b", "attn_k.bias"},     {"attn.v.b", "attn_v.bias"}};
  std::string prefix, rest = q;
  if (q.rfind("blk.", 0) == 0) {
    const size_t dot = q.find('.', 4);
    prefix = q.substr(0, dot + 1), rest = q.substr(dot + 1);
  }
  for (const auto& m : kMap)
    if (rest == m.first) return prefix + m.second;
  return q;
}

// Interleaved rows (the engine's rotary layout) -> rotate-half rows (Hugging Face's, qwen2's GGUF).
std::vector<float> to_rotate_half(const std::vector<float>& x, size_t rows, size_t cols, size_t hd) {
  std::vector<float> y(x.size());
  for (size_t h = 0; h < rows / hd; ++h)
    for (size_t i = 0; i < hd / 2; ++i)
      for (size_t c = 0; c < cols; ++c) {
        y[(h * hd + i) * cols + c] = x[(h * hd + 2 * i) * cols + c];
        y[(h * hd + hd / 2 + i) * cols + c] = x[(h * hd + 2 * i + 1) * cols + c];
      }
  return y;
}

// A gpt2 vocabulary of n tokens: <|endoftext|> (control), "Ġ" (a space), letters, "Ġa" (merge "Ġ a").
std::vector<std::string> gpt2_tokens(int n) {
  std::vector<std::string> t = {"<|endoftext|>", "\xc4\xa0", "a", "b", "\xc4\xa0" "a", "\xc4\x8a"};
  const char* more = "cdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  for (int i = 0; (int)t.size() < n; ++i) t.push_back(std::string(1, more[i]));
  t.resize((size_t)n);
  return t;
}

struct ModelSpec {
  std::string arch = "llama";
  int64_t V = 40, d = 16, ff = 24, L = 2, H = 4, KV = 2, ctx = 32;
  bool tied = false;
  std::function<void(G&)> kv;                 // extra or replaced metadata (after the standard keys)
  std::function<bool(const std::string&)> skip_key;  // standard keys to leave out
  std::function<void(G&)> tensors;            // extra tensors
};

// The GGUF of a model whose tensors (qtf names, row-major) are `enc`; metadata from spec.
std::vector<uint8_t> model_gguf(const ModelSpec& s, const std::vector<std::pair<std::string, Encoded>>& enc) {
  G g;
  auto skip = [&](const char* k) { return s.skip_key && s.skip_key(k); };
  const std::string a = s.arch + ".";
  if (!skip("general.architecture")) g.str("general.architecture", s.arch);
  g.str("general.name", "tiny test model");
  if (!skip("context_length")) g.u32(a + "context_length", (uint32_t)s.ctx);
  if (!skip("embedding_length")) g.u32(a + "embedding_length", (uint32_t)s.d);
  if (!skip("block_count")) g.u32(a + "block_count", (uint32_t)s.L);
  if (!skip("feed_forward_length")) g.u32(a + "feed_forward_length", (uint32_t)s.ff);
  if (!skip("head_count")) g.u32(a + "attention.head_count", (uint32_t)s.H);
  if (!skip("head_count_kv")) g.u32(a + "attention.head_count_kv", (uint32_t)s.KV);
  if (!skip("rms_eps")) g.f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  if (!skip("freq_base")) g.f32(a + "rope.freq_base", 10000.f);
  if (!skip("tokenizer")) {
    g.str("tokenizer.ggml.model", "gpt2");
    g.str("tokenizer.ggml.pre", "gpt-2");
    const std::vector<std::string> toks = gpt2_tokens((int)s.V);
    g.strs("tokenizer.ggml.tokens", toks);
    std::vector<int32_t> types(toks.size(), 1);
    types[0] = 3;
    g.i32s("tokenizer.ggml.token_type", types);
    g.strs("tokenizer.ggml.merges", {"\xc4\xa0 a"});
    g.u32("tokenizer.ggml.bos_token_id", 0);
    g.u32("tokenizer.ggml.eos_token_id", 0);
  }
  if (s.kv) s.kv(g);
  for (const auto& [name, e] : enc) {
    size_t n = e.values.size(), rows = 1;
    std::vector<uint64_t> ne;  // ggml order
    if (name == "tok_emb" || name == "head.w") ne = {(uint64_t)s.d, (uint64_t)s.V};
    else if (name.find(".w") == name.size() - 2 && name.find("ln") == std::string::npos && name != "lnf.w") {
      rows = name.find("attn.k") != std::string::npos || name.find("attn.v") != std::string::npos ? (size_t)(s.KV * s.d / s.H)
             : name.find("ffn.gate") != std::string::npos || name.find("ffn.up") != std::string::npos ? (size_t)s.ff
                                                                                                        : (size_t)s.d;
      ne = {(uint64_t)(n / rows), (uint64_t)rows};
    } else {
      ne = {(uint64_t)n};
    }
    g.tensor(gguf_name(name), ne, e.type, e.bytes.data(), e.bytes.size());
  }
  if (s.tensors) s.tensors(g);
  return g.finish();
}

struct Fixture {
  std::vector<uint8_t> bytes;
  format::ModelFile file;
  qtf::testing::Tensors t;
  Fixture() {
    bytes = qtf::testing::fixture_bytes("llama2c_tiny.qtf");
    REQUIRE(file.open(bytes.data(), bytes.size()).ok());
    t = qtf::testing::tensors_of(file);
  }
  // The fixture's tensors as F32 GGUF tensors, in its order.
  std::vector<std::pair<std::string, Encoded>> f32() const {
    std::vector<std::pair<std::string, Encoded>> out;
    for (const std::string& n : t.order) out.push_back({n, enc_f32(t.values.at(n))});
    return out;
  }
};


Status convert(const std::vector<uint8_t>& g, std::vector<uint8_t>* out) {
  return import::gguf_to_qtf(g.data(), g.size(), "t.gguf", out);
}
// With Output::dequantize_f32: quantized matrices to f32 rather than q8 (requantize_q4: to q4).
Status convert_f32(const std::vector<uint8_t>& g, std::vector<uint8_t>* out, bool q4 = false) {
  format::Image image;
  import::Output o;
  o.image = &image;
  o.dequantize_f32 = !q4;
  o.requantize_q4 = q4;
  return import::to_vector(import::gguf_to_qtf(g.data(), g.size(), "t.gguf", o), image, out);
}
// Rows of `cols` values as `qtf quantize` rounds them to q4 (host::quantize_q4_row), then decoded:
// x = d * (nibble - 8), byte j of a block holding values j (low nibble) and j + 16.
std::vector<float> q4_rounded(const std::vector<float>& v, size_t cols) {
  std::vector<float> out;
  std::vector<uint8_t> row((cols + 31) / 32 * 18);
  for (size_t r = 0; r < v.size() / cols; ++r) {
    REQUIRE(host::quantize_q4_row(v.data() + r * cols, (int64_t)cols, host::Q4Scale::search, row.data()));
    for (size_t b = 0; b < cols / 32; ++b) {
      const uint8_t* blk = row.data() + 18 * b;
      const float d = f16((uint16_t)(blk[0] | (blk[1] << 8)));
      float x[32];
      for (int j = 0; j < 16; ++j) x[j] = (float)((blk[2 + j] & 15) - 8) * d, x[j + 16] = (float)((blk[2 + j] >> 4) - 8) * d;
      out.insert(out.end(), x, x + 32);
    }
  }
  return out;
}
Status convert(const std::vector<uint8_t>& g) {
  std::vector<uint8_t> out;
  Status st = convert(g, &out);
  if (!st.ok()) CHECK(out.empty());
  return st;
}

std::string meta_str(const format::ModelFile& f, const char* key) {
  format::Str s;
  return f.get_str(key, &s).ok() ? std::string(s.data, s.size) : std::string("<missing>");
}
int64_t meta_i64(const format::ModelFile& f, const char* key) {
  int64_t v = -999;
  (void)f.get_i64(key, &v);
  return v;
}

}  // namespace

TEST_CASE("gguf: block dequantizers against hand-built blocks") {
  // Q4_0, d = 0.5: byte 0 = 0x1F: value 0 = (15 - 8) * 0.5, value 16 = (1 - 8) * 0.5; other bytes 0x88: 0.
  std::vector<uint8_t> q40 = {0x00, 0x38};  // f16 0.5
  q40.push_back(0x1F);
  q40.insert(q40.end(), 15, 0x88);
  float y[256];
  REQUIRE(import::dequantize(import::kQ4_0, q40.data(), 32, y));
  CHECK(y[0] == 3.5f);
  CHECK(y[16] == -3.5f);
  for (int j : {1, 15, 17, 31}) CHECK(y[j] == 0.f);
  // Q8_0, d = 2: value j = 2 * int8(byte j).
  std::vector<uint8_t> q80 = {0x00, 0x40};
  for (int j = 0; j < 32; ++j) q80.push_back((uint8_t)(int8_t)(j - 16));
  REQUIRE(import::dequantize(import::kQ8_0, q80.data(), 32, y));
  for (int j = 0; j < 32; ++j) CHECK(y[j] == 2.f * (float)(j - 16));
  // Q5_0, d = -1, every q = 16 (fifth bits set, nibbles 0): (16 - 16) * -1 is -0.f, as ggml's dequantize_row_q5_0
  // writes it (bench/real/gguf_types.py compares every imported value with ggml's bit for bit).
  std::vector<uint8_t> q50 = {0x00, 0xBC, 0xFF, 0xFF, 0xFF, 0xFF};
  q50.insert(q50.end(), 16, 0x00);
  REQUIRE(import::dequantize(import::kQ5_0, q50.data(), 32, y));
  for (int j : {0, 16, 31}) CHECK((y[j] == 0.f && std::signbit(y[j])));
  // BF16 and F16: exact.
  const uint8_t bf[4] = {0x80, 0x3F, 0x40, 0xC0};  // 1.0, -3.0
  REQUIRE(import::dequantize(import::kBF16, bf, 2, y));
  CHECK(y[0] == 1.f);
  CHECK(y[1] == -3.f);
  // Q4_K, d = 1, dmin = 1; sub-block 0: scale 1, min 0; sub-block 5: scale 33 (high bits 10), min 17
  // (packed across bytes 1, 5, 9); every nibble 3 -> sub-block 0 values 3, sub-block 5 values 33*3 - 17.
  std::vector<uint8_t> q4k = {0x00, 0x3C, 0x00, 0x3C};
  uint8_t pk[12] = {1, (uint8_t)(2u << 6), 0, 0, 0, (uint8_t)(1u << 6), 0, 0, 0, (uint8_t)(1 | (1 << 4)), 0, 0};
  q4k.insert(q4k.end(), pk, pk + 12);
  q4k.insert(q4k.end(), 128, 0x33);
  REQUIRE(import::dequantize(import::kQ4_K, q4k.data(), 256, y));
  CHECK(y[0] == 3.f);
  CHECK(y[31] == 3.f);
  CHECK(y[5 * 32] == 33.f * 3 - 17);
  CHECK(y[5 * 32 + 31] == 33.f * 3 - 17);
  CHECK(y[32] == 0.f);  // sub-block 1: scale 0 (byte 1's low bits), min 0
  // Q6_K, d = 1: ql = 0x21 everywhere, qh = 0b11100100 (pairs 0, 1, 2, 3), scale j = j + 1:
  // q[l] = 1 | 0 << 4 = 1, q[l+32] = 1 | 1 << 4 = 17, q[l+64] = 2 | 2 << 4 = 34, q[l+96] = 2 | 3 << 4 = 50.
  std::vector<uint8_t> q6k(128, 0x21);
  q6k.insert(q6k.end(), 64, 0xE4);
  for (int j = 0; j < 16; ++j) q6k.push_back((uint8_t)(j + 1));
  q6k.push_back(0x00), q6k.push_back(0x3C);
  REQUIRE(import::dequantize(import::kQ6_K, q6k.data(), 256, y));
  CHECK(y[0] == 1.f * (1 - 32));
  CHECK(y[32] == 3.f * (17 - 32));
  CHECK(y[64] == 5.f * (34 - 32));
  CHECK(y[96] == 7.f * (50 - 32));
  CHECK(y[128 + 100] == 15.f * (50 - 32));  // the second half: value 228 has scale 14 (+1)
  // Q2_K, d = 1, dmin = 0.5: sub-block s: scale s % 16, min 15 - s; every byte 0xE4 (q 0, 1, 2, 3 at shifts
  // 0, 2, 4, 6): value 128h + 32k + l has q = k, in sub-block 8h + 2k + l / 16.
  std::vector<uint8_t> q2k;
  for (int s2 = 0; s2 < 16; ++s2) q2k.push_back((uint8_t)(s2 | ((15 - s2) << 4)));
  q2k.insert(q2k.end(), 64, 0xE4);
  q2k.push_back(0x00), q2k.push_back(0x3C), q2k.push_back(0x00), q2k.push_back(0x38);
  REQUIRE(import::dequantize(import::kQ2_K, q2k.data(), 256, y));
  CHECK(y[0] == 0.f * 0 - 0.5f * 15);
  CHECK(y[33] == 2.f * 1 - 0.5f * 13);     // k 1, sub-block 2
  CHECK(y[128 + 96 + 20] == 15.f * 3 - 0.5f * 0);  // h 1, k 3, l 20: sub-block 15
  // Q3_K, d = 1: hmask byte l has bit b set for b odd only; low bits as Q2_K's above (q = k); scales:
  // sub-block 0 -> 1 - 32, 5 -> 0x2A - 32 = 10, 10 -> 0x33 - 32 = 19, 15 -> 63 - 32 = 31.
  std::vector<uint8_t> q3k(32, 0xAA);
  q3k.insert(q3k.end(), 64, 0xE4);
  uint8_t s3[12] = {0x01, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0x08, 0x03, 0x0F};  // 5: top bits 2 at shift 2 of byte 9
  s3[2] |= 0x3 << 4, s3[7] |= 0xF << 4;  // sub-blocks 10 and 15: high nibbles of bytes 2 and 7
  s3[10] |= 0x3 << 4, s3[11] |= 0x3 << 6;  // their top bits (10: 2*(10/4) = 4 of byte 10; 15: 6 of byte 11)
  q3k.insert(q3k.end(), s3, s3 + 12);
  q3k.push_back(0x00), q3k.push_back(0x3C);
  REQUIRE(import::dequantize(import::kQ3_K, q3k.data(), 256, y));
  CHECK(y[0] == -31.f * (0 - 4));         // value 0: k 0, hmask bit 0 clear: q = 0 - 4
  CHECK(y[80] == 10.f * (2 - 4));          // value 80 (sub-block 5): k 2, bit 2 clear
  CHECK(y[160] == 19.f * 1);               // value 160 (sub-block 10): h 1, k 1, bit 5 set
  CHECK(y[255] == 31.f * 3);               // value 255: k 3 of h 1, bit 7 set
  // IQ4_NL, d = 0.5: byte 0 = 0xF0 (values 0 and 16: levels 0 and 15), the rest 0x88 (level 8, 1).
  std::vector<uint8_t> nl = {0x00, 0x38, 0xF0};
  nl.insert(nl.end(), 15, 0x88);
  REQUIRE(import::dequantize(import::kIQ4_NL, nl.data(), 32, y));
  CHECK(y[0] == -63.5f);
  CHECK(y[16] == 56.5f);
  CHECK(y[1] == 0.5f);
  // IQ4_XS, d = 1: sub-block 0 ls = 33 (0x21: low 1, high 2), sub-block 7 ls = 0 (high 0); indices 0x79.
  std::vector<uint8_t> xs = {0x00, 0x3C, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00};
  xs.insert(xs.end(), 128, 0x79);
  REQUIRE(import::dequantize(import::kIQ4_XS, xs.data(), 256, y));
  CHECK(y[0] == 1.f * 13);             // sub-block 0: scale 33 - 32, level 9
  CHECK(y[16] == 1.f * -10);           // its value 16: level 7
  CHECK(y[224] == -32.f * 13);         // sub-block 7: scale 0 - 32
  CHECK(y[32] == -32.f * 13);          // sub-block 1: ls 0 too
  CHECK(!import::dequantize(34, q6k.data(), 256, y));  // TQ1_0: not imported
  // The encoders of this test agree with the decoders on random data (the round trips below rely on them).
  std::vector<float> x(512);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 0.05f);
  for (float& v : x) v = nd(rng);
  for (uint32_t type : {import::kQ4_0, import::kQ4_1, import::kQ5_0, import::kQ5_1, import::kQ8_0, import::kQ4_K,
                        import::kQ5_K, import::kQ6_K, import::kQ2_K, import::kQ3_K, import::kIQ4_NL, import::kIQ4_XS,
                        import::kIQ3_XXS, import::kIQ3_S, import::kIQ2_XXS, import::kIQ2_XS, import::kIQ2_S,
                        import::kIQ1_S, import::kIQ1_M, import::kF16, import::kBF16}) {
    INFO(import::ggml_type_name(type));
    const Encoded e = encode(type, x, 9);
    std::vector<float> got(x.size());
    REQUIRE(import::dequantize(type, e.bytes.data(), x.size(), got.data()));
    CHECK(got == e.values);
  }
}

TEST_CASE("gguf: the llama fixture as an F32 GGUF imports to the same tensors and logits") {
  Fixture fx;
  std::vector<uint8_t> out;
  Status st = convert(model_gguf(ModelSpec(), fx.f32()), &out);
  REQUIRE_MESSAGE(st.ok(), st.message());
  format::ModelFile f;
  REQUIRE(f.open(out.data(), out.size()).ok());
  const qtf::testing::Tensors got = qtf::testing::tensors_of(f);
  CHECK(got.order == fx.t.order);
  for (const std::string& n : fx.t.order) {
    INFO(n);
    CHECK(got.dims.at(n) == fx.t.dims.at(n));
    CHECK(got.values.at(n) == fx.t.values.at(n));
  }
  CHECK(meta_i64(f, "model.tied_embeddings") == 0);
  CHECK(meta_i64(f, "model.linear_bias") == 0);
  CHECK(meta_i64(f, "model.n_kv_heads") == 2);
  CHECK(meta_str(f, "provenance.source") == "GGUF v3, architecture llama");
  CHECK(meta_str(f, "provenance.general_name") == "tiny test model");
  CHECK(worst_logit_error(out) <= 1e-4f);
  // GGUF v2 reads the same way.
  std::vector<uint8_t> v2 = model_gguf(ModelSpec(), fx.f32());
  v2[4] = 2;
  REQUIRE(convert(v2, &out).ok());
  // Tied: no output.weight -> tied_embeddings 1, no head.w.
  auto tensors = fx.f32();
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [](const auto& p) { return p.first == "head.w"; }),
                tensors.end());
  REQUIRE(convert(model_gguf(ModelSpec(), tensors), &out).ok());
  REQUIRE(f.open(out.data(), out.size()).ok());
  CHECK(meta_i64(f, "model.tied_embeddings") == 1);
  format::TensorInfo ti;
  CHECK(!f.find_tensor("head.w", &ti));
  const std::vector<uint8_t> tied_image(out.begin(), out.end());
  // Tied, the one matrix stored as output.weight and no token_embd.weight (convert_hf_to_gguf.py's file of
  // a checkpoint that kept only lm_head.weight, TinyStories-656K): imported as the tied embedding, the same
  // tensors and logits as above.
  for (auto& p : tensors)
    if (p.first == "tok_emb") p.first = "head.w";  // written as output.weight
  st = convert(model_gguf(ModelSpec(), tensors), &out);
  REQUIRE_MESSAGE(st.ok(), st.message());
  REQUIRE(f.open(out.data(), out.size()).ok());
  CHECK(meta_i64(f, "model.tied_embeddings") == 1);
  CHECK(!f.find_tensor("head.w", &ti));
  CHECK(meta_str(f, "provenance.gguf_embedding").find("output.weight") == 0);
  format::ModelFile tied_file;
  REQUIRE(tied_file.open(tied_image.data(), tied_image.size()).ok());
  const qtf::testing::Tensors a = qtf::testing::tensors_of(tied_file), b = qtf::testing::tensors_of(f);
  CHECK(a.order == b.order);
  for (const std::string& n : a.order) CHECK(a.values.at(n) == b.values.at(n));
}

TEST_CASE("gguf: qwen2's rotate-half q/k rows and biases are permuted to the engine's interleaved pairs") {
  Fixture fx;
  const size_t hd = 4;
  auto qwen = [&](const std::vector<float>& qb, const std::vector<float>& kb, const std::vector<float>& vb,
                  bool rotate_half) {
    std::vector<std::pair<std::string, Encoded>> t;
    for (const std::string& n : fx.t.order) {
      std::vector<float> v = fx.t.values.at(n);
      const bool qk = n.find("attn.q.w") != std::string::npos || n.find("attn.k.w") != std::string::npos;
      if (qk && rotate_half) v = to_rotate_half(v, fx.t.dims.at(n)[0], fx.t.dims.at(n)[1], hd);
      t.push_back({n, enc_f32(v)});
      if (n.find("attn.v.w") != std::string::npos) {  // after q, k, v: their biases
        const std::string p = n.substr(0, n.find("attn"));
        t.push_back({p + "attn.q.b", enc_f32(rotate_half ? to_rotate_half(qb, 16, 1, hd) : qb)});
        t.push_back({p + "attn.k.b", enc_f32(rotate_half ? to_rotate_half(kb, 8, 1, hd) : kb)});
        t.push_back({p + "attn.v.b", enc_f32(vb)});
      }
    }
    ModelSpec s;
    s.arch = rotate_half ? "qwen2" : "llama";
    return model_gguf(s, t);
  };
  // Zero biases: the fixture's logits.
  std::vector<uint8_t> out;
  Status st = convert(qwen(std::vector<float>(16), std::vector<float>(8), std::vector<float>(8), true), &out);
  REQUIRE_MESSAGE(st.ok(), st.message());
  format::ModelFile f;
  REQUIRE(f.open(out.data(), out.size()).ok());
  CHECK(meta_i64(f, "model.linear_bias") == 1);
  const qtf::testing::Tensors got = qtf::testing::tensors_of(f);
  CHECK(got.values.at("blk.1.attn.q.w") == fx.t.values.at("blk.1.attn.q.w"));
  CHECK(got.values.at("blk.0.attn.k.w") == fx.t.values.at("blk.0.attn.k.w"));
  CHECK(got.values.at("blk.0.ffn.down.b") == std::vector<float>(16, 0.f));  // the zero biases qwen2 lacks
  CHECK(got.values.at("blk.1.attn.o.b") == std::vector<float>(16, 0.f));
  CHECK(worst_logit_error(out) <= 1e-4f);
  // Non-zero biases: qwen2's rotate-half file and the interleaved llama file import to the same tensors.
  std::vector<float> qb(16), kb(8), vb(8);
  for (size_t i = 0; i < 16; ++i) qb[i] = 0.1f * (float)i - 0.5f, kb[i / 2] = 0.05f * (float)i, vb[i / 2] = -0.03f * (float)i;
  std::vector<uint8_t> a, b;
  REQUIRE(convert(qwen(qb, kb, vb, true), &a).ok());
  REQUIRE(convert(qwen(qb, kb, vb, false), &b).ok());
  format::ModelFile fa, fb;
  REQUIRE(fa.open(a.data(), a.size()).ok());
  REQUIRE(fb.open(b.data(), b.size()).ok());
  const qtf::testing::Tensors ta = qtf::testing::tensors_of(fa), tb = qtf::testing::tensors_of(fb);
  CHECK(ta.values == tb.values);
  CHECK(ta.values.at("blk.0.attn.q.b") == qb);
}

namespace {

// A one-layer llama (d = ff = 256, 2 heads, 1 kv head, vocab 8) with every matrix random in `type` (norms
// f32), seeded by `seed`; *s receives its shape.
std::vector<std::pair<std::string, Encoded>> one_layer_tensors(uint32_t type, uint32_t seed, ModelSpec* s) {
  s->d = 256, s->ff = 256, s->L = 1, s->H = 2, s->KV = 1, s->V = 8;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  auto rnd = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
  };
  std::vector<std::pair<std::string, Encoded>> t;
  uint32_t k = 1;
  t.push_back({"tok_emb", encode(type, rnd(8 * 256), k++)});
  for (const char* n : {"ln1.w", "ln2.w"}) t.push_back({std::string("blk.0.") + n, enc_f32(rnd(256))});
  for (const char* n : {"attn.q.w", "attn.k.w", "attn.v.w", "attn.o.w", "ffn.gate.w", "ffn.up.w", "ffn.down.w"}) {
    const size_t rows = std::string(n) == "attn.k.w" || std::string(n) == "attn.v.w" ? 128 : 256;
    t.push_back({std::string("blk.0.") + n, encode(type, rnd(rows * 256), k++)});
  }
  t.push_back({"lnf.w", enc_f32(rnd(256))});
  t.push_back({"head.w", encode(type, rnd(8 * 256), k++)});
  return t;
}

}  // namespace

TEST_CASE("gguf: every tensor type imports the values its blocks hold (F16 stays f16, Q4_0 q4, the rest q8, q4 or f32)") {
  for (uint32_t type : {import::kF16, import::kBF16, import::kQ8_0, import::kQ4_0, import::kQ4_1, import::kQ5_0,
                        import::kQ5_1, import::kQ2_K, import::kQ3_K, import::kQ4_K, import::kQ5_K, import::kQ6_K,
                        import::kIQ4_NL, import::kIQ4_XS, import::kIQ3_XXS, import::kIQ3_S, import::kIQ2_XXS,
                        import::kIQ2_XS, import::kIQ2_S, import::kIQ1_S, import::kIQ1_M})
  for (const int mode : {0, 1, 2}) {  // requantized to q8 (the default), dequantized to f32, requantized to q4
    const bool f32 = mode == 1, q4 = mode == 2;
    const std::string what = std::string(import::ggml_type_name(type)) + (f32 ? ", --gguf-f32" : q4 ? ", --gguf-q4" : "");
    INFO(what);
    ModelSpec s;
    const std::vector<std::pair<std::string, Encoded>> t = one_layer_tensors(type, type, &s);
    std::vector<uint8_t> out;
    Status st = mode ? convert_f32(model_gguf(s, t), &out, q4) : convert(model_gguf(s, t), &out);
    REQUIRE_MESSAGE(st.ok(), st.message());
    format::ModelFile f;
    REQUIRE(f.open(out.data(), out.size()).ok());
    const qtf::testing::Tensors got = qtf::testing::tensors_of(f);
    for (const auto& named : t) {
      const std::string& name = named.first;
      INFO(name);
      const uint32_t ty = named.second.type;
      const bool low_bit = ty == import::kQ4_1 || ty == import::kQ2_K || ty == import::kQ3_K || ty == import::kQ4_K ||
                           ty == import::kIQ4_NL || ty == import::kIQ4_XS || ty == import::kIQ3_XXS ||
                           ty == import::kIQ3_S || ty == import::kIQ2_XXS || ty == import::kIQ2_XS ||
                           ty == import::kIQ2_S || ty == import::kIQ1_S || ty == import::kIQ1_M;  // --gguf-q4: q4
      const bool matrix = name.find("ln") == std::string::npos;  // Q4_0 matrices stay Q4_0 blocks (qtf's q4)
      const bool requantized = matrix && !f32 && ty != import::kF16 && ty != import::kBF16 && ty != import::kQ4_0 &&
                               ty != import::kF32;
      const format::DType want = ty == import::kF16                    ? format::DType::f16
                                 : ty == import::kQ4_0 && matrix ? format::DType::q4
                                 : requantized                   ? (q4 && low_bit ? format::DType::q4 : format::DType::q8)
                                                                 : format::DType::f32;
      CHECK(got.dtype.at(name) == want);
      const std::vector<float>& v = got.values.at(name);
      const std::vector<float>& e = named.second.values;
      REQUIRE(v.size() == e.size());
      if (!requantized) {
        CHECK(v == e);
        continue;
      }
      if (q4 && low_bit) {  // q4: each row rounded as `qtf quantize` rounds it, from the exact values
        CHECK(v == q4_rounded(e, 256));
        continue;
      }
      // q8: each row's values rounded to its scale, max |row| / 127: off by at most half of it.
      const size_t cols = 256;
      for (size_t r = 0; r < e.size() / cols; ++r) {
        float amax = 0, err = 0;
        for (size_t c = 0; c < cols; ++c) amax = std::fmax(amax, std::fabs(e[r * cols + c]));
        for (size_t c = 0; c < cols; ++c) err = std::fmax(err, std::fabs(v[r * cols + c] - e[r * cols + c]));
        CHECK(err <= amax / 127 * 0.5f * 1.001f + 1e-12f);
      }
    }
    host::LoadedModel lm;
    st = lm.load_memory(out.data(), out.size());
    REQUIRE_MESSAGE(st.ok(), st.message());
    host::HostContext hc;
    REQUIRE(hc.init(lm, ContextOptions()).ok());
    REQUIRE(hc.ctx().eval(2).ok());
    for (int v = 0; v < 8; ++v) CHECK(std::isfinite(hc.ctx().logits()[v]));
  }
}

TEST_CASE("gguf: a quantized block with a NaN or Inf scale is refused, as q8 and as f32, naming the tensor") {
  for (const uint16_t bad : {(uint16_t)0x7E00, (uint16_t)0x7C00})  // f16 NaN, +Inf
    for (const uint32_t type : {import::kQ8_0, import::kQ4_K, import::kQ3_K, import::kIQ2_XXS, import::kIQ4_XS})
      for (const bool f32 : {false, true}) {
        INFO(import::ggml_type_name(type) << " scale " << bad << (f32 ? " --gguf-f32" : ""));
        ModelSpec s;
        std::vector<std::pair<std::string, Encoded>> t = one_layer_tensors(type, 5, &s);
        std::vector<uint8_t>& q = t[3].second.bytes;  // blk.0.attn.q.w; its 3rd block's d (Q8_0: 34 bytes a block)
        // Q4_K, IQ2_XXS, IQ4_XS: the first super-block's d at its start; Q3_K's after its 108 bytes of codes
        const size_t at = type == import::kQ8_0 ? 2 * 34 : type == import::kQ3_K ? 108 : 0;
        q[at] = (uint8_t)(bad & 0xFF), q[at + 1] = (uint8_t)(bad >> 8);
        std::vector<uint8_t> out;
        const Status st = f32 ? convert_f32(model_gguf(s, t), &out) : convert(model_gguf(s, t), &out);
        REQUIRE(!st.ok());
        CHECK(std::string(st.message()).find("non-finite values (NaN/Inf) after conversion") != std::string::npos);
        CHECK(std::string(st.message()).find(f32 ? "'blk.0.attn.q.w'" : "'blk.0.attn_q.weight'") != std::string::npos);
        CHECK(out.empty());
      }
}

TEST_CASE("gguf: tokenizers: llama -> spm keys with llama.cpp's defaults, gpt2 -> bpe over raw bytes") {
  G g;
  g.str("tokenizer.ggml.model", "llama");
  g.strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x0A>", "\xe2\x96\x81" "a", "a\\b", "b"});
  g.f32s("tokenizer.ggml.scores", {0, 0, 0, 0, -1.5f, -2, -3});
  g.i32s("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1});
  g.str("tokenizer.chat_template", "{{ messages }}");
  std::vector<uint8_t> bytes = g.finish();
  format::Writer w;
  int vocab = 0;
  Status st = import::gguf_tokenizer(bytes.data(), bytes.size(), &w, &vocab);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(vocab == 7);
  std::vector<uint8_t> img = w.finish();
  format::ModelFile f;
  REQUIRE(f.open(img.data(), img.size()).ok());
  CHECK(meta_str(f, "tokenizer.type") == "spm");
  format::MetaEntry e;
  format::Str s;
  double sc;
  REQUIRE(f.find_meta("tokenizer.tokens", &e));
  REQUIRE(e.str_at(4, &s));
  CHECK(std::string(s.data, s.size) == "\xe2\x96\x81" "a");  // pieces as they are
  REQUIRE(e.str_at(5, &s));
  CHECK(std::string(s.data, s.size) == "a\\\\b");  // a backslash escaped
  REQUIRE(f.find_meta("tokenizer.scores", &e));
  REQUIRE(e.f64_at(5, &sc));
  CHECK(sc == -2.0);
  CHECK(meta_i64(f, "tokenizer.bos_id") == 1);  // llama.cpp's spm defaults: bos 1, eos 2, unk 0, add_bos
  CHECK(meta_i64(f, "tokenizer.eos_id") == 2);
  CHECK(meta_i64(f, "tokenizer.unk_id") == 0);
  CHECK(meta_i64(f, "tokenizer.pad_id") == -1);
  CHECK(meta_i64(f, "tokenizer.add_bos") == 1);
  CHECK(meta_i64(f, "tokenizer.add_eos") == 0);
  CHECK(meta_i64(f, "tokenizer.add_space_prefix") == 1);
  CHECK(meta_str(f, "tokenizer.chat_template") == "{{ messages }}");

  // gpt2: "Ġ" is a space, "Ċ" a newline, control tokens stay text; merges in raw bytes, escaped.
  G h;
  h.str("tokenizer.ggml.model", "gpt2");
  h.str("tokenizer.ggml.pre", "gpt-2");
  h.strs("tokenizer.ggml.tokens", gpt2_tokens(8));
  h.i32s("tokenizer.ggml.token_type", {3, 1, 1, 1, 1, 1, 1, 1});
  h.strs("tokenizer.ggml.merges", {"\xc4\xa0 a"});
  h.u32("tokenizer.ggml.eos_token_id", 0);
  h.boolean("tokenizer.ggml.add_bos_token", true);
  bytes = h.finish();
  format::Writer w2;
  REQUIRE(import::gguf_tokenizer(bytes.data(), bytes.size(), &w2, &vocab).ok());
  img = w2.finish();
  REQUIRE(f.open(img.data(), img.size()).ok());
  CHECK(meta_str(f, "tokenizer.type") == "bpe");
  CHECK(meta_str(f, "tokenizer.pre") == "gpt2");
  REQUIRE(f.find_meta("tokenizer.tokens", &e));
  const char* want[] = {"<|endoftext|>", "\\x20", "a", "b", "\\x20a", "\\x0a", "c", "d"};
  for (uint32_t i = 0; i < 8; ++i) {
    REQUIRE(e.str_at(i, &s));
    CHECK(std::string(s.data, s.size) == want[i]);
  }
  REQUIRE(f.find_meta("tokenizer.merges", &e));
  REQUIRE(e.str_at(0, &s));
  CHECK(std::string(s.data, s.size) == "\\x20 a");
  CHECK(meta_i64(f, "tokenizer.eos_id") == 0);
  CHECK(meta_i64(f, "tokenizer.bos_id") == -1);  // llama.cpp's default 11 is past this vocabulary
  CHECK(meta_i64(f, "tokenizer.add_bos") == 1);
}

TEST_CASE("gguf: hostile and unsupported files get one clear line each, never a crash") {
  Fixture fx;
  const std::vector<uint8_t> good = model_gguf(ModelSpec(), fx.f32());
  REQUIRE(convert(good).ok());
  auto patched = [&](size_t at, uint64_t v, int n) {
    std::vector<uint8_t> b = good;
    for (int i = 0; i < n; ++i) b[at + i] = (uint8_t)(v >> (8 * i));
    return b;
  };
  // Header.
  expect_error(convert(std::vector<uint8_t>(good.begin(), good.begin() + 3)), "GGUF truncated");
  expect_error(convert(patched(0, 'G' | 'G' << 8 | 'M' << 16 | 'L' << 24, 4)), "no GGUF magic");
  expect_error(convert(patched(4, 1, 4)), "GGUF version 1 is not supported");
  expect_error(convert(patched(4, 0x03000000, 4)), "big-endian");
  expect_error(convert(patched(4, 4, 4)), "version 4 is not supported");
  expect_error(convert(patched(8, 1ull << 62, 8)), "tensors cannot fit");
  expect_error(convert(patched(16, ~0ull, 8)), "metadata entries cannot fit");
  // The first key's length (at byte 24) past the end of the file.
  expect_error(convert(patched(24, 1ull << 40, 8)), "runs past the end of the file");
  expect_error(convert(patched(24, 0, 8)), "has a key of 0 bytes");

  auto with = [&](std::function<void(G&)> kv, std::function<void(G&)> tensors = nullptr) {
    ModelSpec s;
    s.kv = kv;
    s.tensors = tensors;
    return convert(model_gguf(s, fx.f32()));
  };
  // Metadata values.
  expect_error(with([](G& g) { g.u32("general.alignment", 48); }), "power of two");
  expect_error(with([](G& g) { g.u32("general.alignment", 0); }), "power of two");
  expect_error(with([](G& g) { g.u64("general.alignment", 32); }), "must be a u32");
  expect_error(with([](G& g) { g.u32("llama.block_count", 2); }), "appears twice");
  CHECK(with([](G& g) { g.strs("x.empty", {}); }).ok());  // an empty string array is fine...
  {
    G g;  // ...an array of arrays, a huge array count and an unknown value type are not
    g.str("general.architecture", "llama");
    std::vector<uint8_t> b = g.finish();
    const std::vector<uint8_t> head(b.begin(), b.begin() + 24);
    auto entry = [&](std::vector<uint8_t> body) {
      std::vector<uint8_t> f = head;
      f[16] = 1;  // one entry
      const char key[] = "\x01\0\0\0\0\0\0\0k";
      f.insert(f.end(), key, key + 9);
      f.insert(f.end(), body.begin(), body.end());
      return f;
    };
    expect_error(convert(entry({9, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})), "array of arrays");
    expect_error(convert(entry({9, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10})), "cannot fit");
    expect_error(convert(entry({9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0})), "strings cannot fit");
    expect_error(convert(entry({13, 0, 0, 0, 0, 0, 0, 0})), "unknown value type 13");
    expect_error(convert(entry({9, 0, 0, 0, 77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})), "unknown array element type 77");
  }
  // Tensors: dims, types, offsets.
  auto tensor = [&](const std::string& name, std::vector<uint64_t> ne, uint32_t type, size_t bytes) {
    return with(nullptr, [=](G& g) {
      std::vector<uint8_t> data(bytes, 0);
      g.tensor(name, ne, type, data.data(), data.size());
    });
  };
  expect_error(tensor("x", {1, 1, 1, 1, 1}, 0, 4), "has 5 dimensions");
  expect_error(tensor("x", {}, 0, 4), "has 0 dimensions");
  expect_error(tensor("x", {4, 0}, 0, 0), "dimension 1 is 0");
  expect_error(tensor("x", {1ull << 32, 1ull << 32, 1ull << 32}, 0, 4), "element count overflows");
  expect_error(tensor("x", {1ull << 62}, 0, 4), "byte size overflows");
  expect_error(tensor("x", {1ull << 40}, 0, 4), "runs past the end of the file");
  expect_error(tensor("x", {256}, 34, 54), "type TQ1_0 (34), which qtf does not import");
  expect_error(tensor("x", {32}, 99, 32), "type unknown (99)");
  expect_error(tensor("x", {16}, import::kQ8_0, 34), "not a multiple of its block of 32");
  expect_error(tensor(std::string(64, 'n'), {4}, 0, 16), "a name of 64 bytes");
  expect_error(tensor("tok_emb_extra", {4}, 0, 16), "is not part of the llama block");
  expect_error(tensor("token_embd.weight", {4}, 0, 16), "appears twice");
  expect_error(tensor("rope_freqs.weight", {2}, 0, 8), "rope frequency factors");
  {
    size_t table_end = 0;
    G g;
    g.str("general.architecture", "llama");
    const float z[8] = {0};
    g.tensor("a", {8}, 0, z, sizeof z);
    std::vector<uint8_t> b = g.finish(&table_end);
    for (uint64_t off : {16ull, 1ull << 40, ~0ull - 31}) {
      std::vector<uint8_t> c = b;
      std::memcpy(c.data() + table_end - 8, &off, 8);  // the last tensor's offset
      expect_error(convert(c), off == 16 ? "not a multiple of the alignment" : "runs past the end of the file");
    }
  }
  // Architecture and hyperparameters.
  ModelSpec s;
  s.arch = "gpt-neox";
  expect_error(convert(model_gguf(s, fx.f32())), "GGUF architecture 'gpt-neox' is not supported (llama, qwen2)");
  s = ModelSpec();
  s.skip_key = [](const std::string& k) { return k == "general.architecture"; };
  expect_error(convert(model_gguf(s, fx.f32())), "general.architecture is missing");
  s.skip_key = [](const std::string& k) { return k == "rms_eps"; };
  expect_error(convert(model_gguf(s, fx.f32())), "'llama.attention.layer_norm_rms_epsilon' is missing");
  s.skip_key = [](const std::string& k) { return k == "head_count"; };
  s.kv = [](G& g) { g.u32s("llama.attention.head_count", {4, 8}); };
  expect_error(convert(model_gguf(s, fx.f32())), "differs between layers");
  expect_error(with([](G& g) { g.str("llama.rope.scaling.type", "linear"), g.f32("llama.rope.scaling.factor", 4); }),
               "rope scaling 'linear' with factor 4");
  CHECK(with([](G& g) { g.str("llama.rope.scaling.type", "linear"), g.f32("llama.rope.scaling.factor", 1); }).ok());
  expect_error(with([](G& g) { g.u32("llama.rope.dimension_count", 2); }), "not the head size 4");
  expect_error(with([](G& g) { g.u32("llama.expert_count", 8); }), "mixture of 8 experts");
  s = ModelSpec();
  s.skip_key = [](const std::string& k) { return k == "freq_base"; };
  s.kv = [](G& g) { g.f32("llama.rope.freq_base", NAN); };
  expect_error(convert(model_gguf(s, fx.f32())), "not a finite number");
  // Tensors missing, misshapen, a vocabulary that does not match.
  auto without = [&](const char* name) {
    auto t = fx.f32();
    t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& p) { return p.first == name; }), t.end());
    return convert(model_gguf(ModelSpec(), t));
  };
  expect_error(without("blk.1.ffn.up.w"), "tensor 'blk.1.ffn_up.weight' is missing");
  {  // no embedding at all (output.weight would stand in for it: see the tied test)
    auto t = fx.f32();
    t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& p) { return p.first == "tok_emb" || p.first == "head.w"; }),
            t.end());
    expect_error(convert(model_gguf(ModelSpec(), t)), "'token_embd.weight' (or, for a tied model, 'output.weight') is missing");
  }
  auto t = fx.f32();
  std::swap(t[3].second, t[4].second);  // blk.0.attn.q.w [16, 16] <-> attn.k.w [8, 16]
  expect_error(convert(model_gguf(ModelSpec(), t)), "has shape");
  s = ModelSpec();
  s.skip_key = [](const std::string& k) { return k == "tokenizer"; };
  expect_error(convert(model_gguf(s, fx.f32())), "no tokenizer");
  s.kv = [](G& g) {
    g.str("tokenizer.ggml.model", "bert");
    g.strs("tokenizer.ggml.tokens", gpt2_tokens(40));
  };
  expect_error(convert(model_gguf(s, fx.f32())), "tokenizer model 'bert' is not supported (llama, gpt2)");
  s.kv = [](G& g) {
    g.str("tokenizer.ggml.model", "gpt2");
    g.str("tokenizer.ggml.pre", "llama3");
    g.strs("tokenizer.ggml.tokens", gpt2_tokens(40));
  };
  expect_error(convert(model_gguf(s, fx.f32())), "pre-tokenizer 'llama3' is not supported");
  s.kv = [](G& g) {
    g.str("tokenizer.ggml.model", "gpt2");
    g.str("tokenizer.ggml.pre", "gpt-2");
    g.strs("tokenizer.ggml.tokens", gpt2_tokens(39));
    g.strs("tokenizer.ggml.merges", {});
  };
  expect_error(convert(model_gguf(s, fx.f32())), "39 tokens, but token_embd.weight has 40 rows");
  s.kv = [](G& g) {
    g.str("tokenizer.ggml.model", "gpt2");
    g.str("tokenizer.ggml.pre", "gpt-2");
    g.strs("tokenizer.ggml.tokens", gpt2_tokens(40));
    g.strs("tokenizer.ggml.merges", {"nospace"});
  };
  expect_error(convert(model_gguf(s, fx.f32())), "merge 0 'nospace' is not two GPT-2 byte strings");
  {
    G g;  // vocab only
    g.str("general.architecture", "llama");
    expect_error(convert(g.finish()), "no tensors");
  }
  // Truncated at every byte of the metadata and table, then in steps through the data: an error, no crash.
  for (size_t n = 0; n < good.size(); n += (n < 4096 ? 1 : 61)) {
    std::vector<uint8_t> out;
    CHECK(!import::gguf_to_qtf(good.data(), n, "t", &out).ok());
  }
}

TEST_CASE("gguf: a .gguf path loads through host::LoadedModel::load_any, converted in memory") {
  Fixture fx;
  const std::vector<uint8_t> g = model_gguf(ModelSpec(), fx.f32());
  const std::string path = "/tmp/qtf_test_gguf_" + std::to_string(getpid()) + ".gguf";
  FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  REQUIRE(std::fwrite(g.data(), 1, g.size(), f) == g.size());
  std::fclose(f);
  CHECK(import::detect(path.c_str()) == import::Source::gguf);
  host::LoadedModel lm;
  Status st = lm.load_any(path.c_str());
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(lm.source() == import::Source::gguf);
  CHECK(lm.model().cfg.n_kv_heads == 2);
  std::vector<uint8_t> out;
  REQUIRE(import::to_qtf(path.c_str(), import::Options(), &out).ok());
  CHECK(worst_logit_error(out) <= 1e-4f);
  std::remove(path.c_str());
}

TEST_CASE("C API: qtf_load_options.gguf_f32 loads a GGUF's Q8_0 matrices exactly, as load_any's option does") {
  ModelSpec s;
  const std::vector<uint8_t> g = model_gguf(s, one_layer_tensors(import::kQ8_0, 7, &s));
  const std::string path = "/tmp/qtf_test_gguf_capi_" + std::to_string(getpid()) + ".gguf";
  FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  REQUIRE(std::fwrite(g.data(), 1, g.size(), f) == g.size());
  std::fclose(f);
  const int32_t prompt[3] = {1, 5, 2};
  auto capi_logits = [&](const qtf_load_options* o) {
    qtf_model* m = nullptr;
    qtf_context* c = nullptr;
    std::vector<float> out;
    REQUIRE_MESSAGE(qtf_model_load_file_with(path.c_str(), o, &m) == QTF_OK, qtf_last_error());
    REQUIRE(qtf_context_new(m, nullptr, &c) == QTF_OK);
    REQUIRE(qtf_decode(c, prompt, 3) == QTF_OK);
    out.assign(qtf_get_logits(c), qtf_get_logits(c) + 8);
    qtf_context_free(c);
    qtf_model_free(m);
    return out;
  };
  auto cpp_logits = [&](bool f32) {
    import::Options io;
    io.gguf_dequantize_f32 = f32;
    host::LoadedModel lm;
    const Status st = lm.load_any(path.c_str(), true, io);
    REQUIRE_MESSAGE(st.ok(), st.message());
    host::HostContext hc;
    REQUIRE(hc.init(lm, ContextOptions()).ok());
    REQUIRE(hc.ctx().eval(prompt, 3).ok());
    return std::vector<float>(hc.ctx().logits(), hc.ctx().logits() + 8);
  };
  qtf_load_options o = qtf_load_default_options();
  const std::vector<float> q8 = capi_logits(&o), plain = capi_logits(nullptr);
  o.gguf_f32 = 1;
  const std::vector<float> exact = capi_logits(&o);
  CHECK(q8 == cpp_logits(false));
  CHECK(plain == q8);  // the default is the requantized q8
  CHECK(exact == cpp_logits(true));
  CHECK(exact != q8);
  // gguf_q4: a Q4_K file's matrices to q4 (a Q8_0 file's stay q8: only what the file keeps in 4 bits or fewer).
  o.gguf_f32 = 0, o.gguf_q4 = 1;
  CHECK(capi_logits(&o) == q8);
  {
    ModelSpec s4;
    const std::vector<uint8_t> g4 = model_gguf(s4, one_layer_tensors(import::kQ4_K, 7, &s4));
    FILE* f4 = std::fopen(path.c_str(), "wb");
    REQUIRE(f4);
    REQUIRE(std::fwrite(g4.data(), 1, g4.size(), f4) == g4.size());
    std::fclose(f4);
  }
  const std::vector<float> four = capi_logits(&o);
  o.gguf_q4 = 0;
  const std::vector<float> q8_of_q4k = capi_logits(&o);
  o.gguf_q4 = 1;
  import::Options io4;
  io4.gguf_requantize_q4 = true;
  {
    host::LoadedModel lm;
    const Status st = lm.load_any(path.c_str(), true, io4);
    REQUIRE_MESSAGE(st.ok(), st.message());
    host::HostContext hc;
    REQUIRE(hc.init(lm, ContextOptions()).ok());
    REQUIRE(hc.ctx().eval(prompt, 3).ok());
    CHECK(four == std::vector<float>(hc.ctx().logits(), hc.ctx().logits() + 8));
  }
  CHECK(four != q8_of_q4k);
  io4.gguf_dequantize_f32 = true;  // both: refused, one line
  {
    host::LoadedModel lm;
    const Status st = lm.load_any(path.c_str(), true, io4);
    REQUIRE(!st.ok());
    CHECK(std::string(st.message()).find("not both") != std::string::npos);
  }
  o.gguf_f32 = 1;
  qtf_model* both = nullptr;
  CHECK(qtf_model_load_file_with(path.c_str(), &o, &both) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(both == nullptr);
  o.gguf_f32 = 0, o.gguf_q4 = 2;
  CHECK(qtf_model_load_file_with(path.c_str(), &o, &both) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(std::string(qtf_last_error()).find("gguf_q4") != std::string::npos);
  o.gguf_q4 = 0;
  // Bad options: one line each, nothing loaded.
  qtf_model* m = nullptr;
  o.gguf_f32 = 2;
  CHECK(qtf_model_load_file_with(path.c_str(), &o, &m) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(std::string(qtf_last_error()).find("gguf_f32") != std::string::npos);
  CHECK(m == nullptr);
  o = qtf_load_default_options();
  o.struct_size = sizeof o + 8;
  CHECK(qtf_model_load_file_with(path.c_str(), &o, &m) == QTF_ERR_INVALID_ARGUMENT);
  CHECK(std::string(qtf_last_error()).find("struct_size") != std::string::npos);
  o.struct_size = 2 * sizeof(int32_t);  // an older, shorter struct: the fields it lacks take their defaults
  REQUIRE(qtf_model_load_file_with(path.c_str(), &o, &m) == QTF_OK);
  qtf_model_free(m);
  CHECK(qtf_model_load_file_with(path.c_str(), nullptr, nullptr) == QTF_ERR_INVALID_ARGUMENT);
  std::remove(path.c_str());
}

TEST_CASE("gguf: qwen2's q/k rows are permuted the same in Q4_0 blocks (kept as q4), Q6_K/Q4_K (to q8, q4) as in f32") {
  for (const uint32_t type : {import::kQ4_0, import::kQ6_K, import::kQ4_K}) {
  INFO(import::ggml_type_name(type));
  ModelSpec s;
  s.arch = "qwen2", s.d = 256, s.ff = 256, s.L = 1, s.H = 2, s.KV = 1, s.V = 8;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<std::pair<std::string, Encoded>> q4, f32;
  auto add = [&](const std::string& name, size_t n, bool matrix) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    const Encoded e = matrix ? encode(type, v, 7) : enc_f32(v);
    q4.push_back({name, e});
    f32.push_back({name, enc_f32(e.values)});
  };
  add("tok_emb", 8 * 256, true);
  add("blk.0.ln1.w", 256, false), add("blk.0.ln2.w", 256, false);
  for (const char* n : {"attn.q.w", "attn.k.w", "attn.v.w", "attn.o.w", "ffn.gate.w", "ffn.up.w", "ffn.down.w"})
    add(std::string("blk.0.") + n, (std::string(n) == "attn.k.w" || std::string(n) == "attn.v.w" ? 128 : 256) * 256, true);
  add("lnf.w", 256, false);
  std::vector<uint8_t> a, b, a4;
  Status st = convert(model_gguf(s, q4), &a);
  REQUIRE_MESSAGE(st.ok(), st.message());
  REQUIRE(convert(model_gguf(s, f32), &b).ok());
  st = convert_f32(model_gguf(s, q4), &a4, true);  // --gguf-q4
  REQUIRE_MESSAGE(st.ok(), st.message());
  format::ModelFile fa, fb;
  REQUIRE(fa.open(a.data(), a.size()).ok());
  REQUIRE(fb.open(b.data(), b.size()).ok());
  const qtf::testing::Tensors ta = qtf::testing::tensors_of(fa), tb = qtf::testing::tensors_of(fb);
  CHECK(ta.values.at("blk.0.attn.q.w") != q4[3].second.values);  // permuted indeed
  if (type == import::kQ4_0) {
    CHECK(ta.dtype.at("blk.0.attn.q.w") == format::DType::q4);
    CHECK(ta.values == tb.values);
    continue;
  }
  // --gguf-q4: every (permuted) row of a Q4_K matrix is the f32 file's row as q4 rounds it; Q6_K stays q8.
  format::ModelFile fc;
  REQUIRE(fc.open(a4.data(), a4.size()).ok());
  const qtf::testing::Tensors tc = qtf::testing::tensors_of(fc);
  for (const char* n : {"blk.0.attn.q.w", "blk.0.attn.k.w", "blk.0.attn.v.w"}) {
    INFO(n);
    if (type == import::kQ6_K) {
      CHECK(tc.values.at(n) == ta.values.at(n));
      continue;
    }
    CHECK(tc.dtype.at(n) == format::DType::q4);
    CHECK(tc.values.at(n) == q4_rounded(tb.values.at(n), 256));
  }
  // q8: every row within its rounding of the f32 file's row (a row taken from elsewhere is far off).
  for (const char* n : {"blk.0.attn.q.w", "blk.0.attn.k.w"}) {
    INFO(n);
    CHECK(ta.dtype.at(n) == format::DType::q8);
    const std::vector<float>&x = ta.values.at(n), &y = tb.values.at(n);
    REQUIRE(x.size() == y.size());
    for (size_t r = 0; r < y.size() / 256; ++r) {
      float amax = 0, err = 0;
      for (size_t c = 0; c < 256; ++c) amax = std::fmax(amax, std::fabs(y[r * 256 + c]));
      for (size_t c = 0; c < 256; ++c) err = std::fmax(err, std::fabs(x[r * 256 + c] - y[r * 256 + c]));
      CHECK(err <= amax / 254 * 1.001f);
    }
  }
  }
}
