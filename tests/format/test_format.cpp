// The .qtf reader/verifier: a valid file round-trips; every kind of damage gets its own clear error;
// no input crashes or reads out of bounds (the sanitizer build runs these too).
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "format/reader.h"
#include "host/writer.h"
#include "kernels/kernels.h"  // Weights (the q4 values read back)

using namespace qtf;
using namespace qtf::format;

namespace {

using Bytes = std::vector<uint8_t>;

// A q4 tensor of 2 rows x 40 values: per row a whole block and a tail block of 8 values (padded with
// nibbles 8). Scale 0.5; value (r, c) = 0.5 * ((r * 40 + c) % 16 - 8).
Bytes q4_rows() {
  Bytes b(2 * 2 * 18, 0);
  for (int r = 0; r < 2; ++r)
    for (int blk = 0; blk < 2; ++blk) {
      uint8_t* p = b.data() + (r * 2 + blk) * 18;
      p[0] = 0x00, p[1] = 0x38;  // f16 0.5
      for (int j = 0; j < 32; ++j) {
        const int c = blk * 32 + j, nibble = c < 40 ? (r * 40 + c) % 16 : 8;
        p[2 + j % 16] |= (uint8_t)(nibble << (j < 16 ? 0 : 4));
      }
    }
  return b;
}

// A q3 tensor of the same shape (kernels.h: f16 d, byte 2 + j: the low bit pairs of values j + 8i at
// bits 2i, bytes 10..13: value j's third bit at bit j): value (r, c) = 0.5 * ((r * 40 + c) % 8 - 4), the
// tail padded with codes 4.
Bytes q3_rows() {
  Bytes b(2 * 2 * 14, 0);
  for (int r = 0; r < 2; ++r)
    for (int blk = 0; blk < 2; ++blk) {
      uint8_t* p = b.data() + (r * 2 + blk) * 14;
      p[0] = 0x00, p[1] = 0x38;  // f16 0.5
      for (int j = 0; j < 32; ++j) {
        const int c = blk * 32 + j, code = c < 40 ? (r * 40 + c) % 8 : 4;
        p[2 + j % 8] |= (uint8_t)((code & 3) << (2 * (j / 8)));
        p[10 + j / 8] |= (uint8_t)((code >> 2) << (j % 8));
      }
    }
  return b;
}

// A q4s (q3s) tensor of 5 rows x 40 values: 10 blocks (row r: blocks 2r and 2r + 1, the second with 8
// values and padding) in two groups: blocks 0..7 (rows 0..3: a group across rows) and 8, 9 (row 4: a
// partial group, sub-scales 2..7 absent and 0). D: 0.3 (f16 0x34CD), then 0.1 (0x2E66); block i's
// sub-scale s_i = (7 i + 3) % 63 - 31 (-28, -21, ..., 0, ..., 28); value (r, c)'s code (r * 40 + c) % 16
// (q3s: % 8); the padding the zero code (8; 4).
int sub_scale(int i) { return (7 * i + 3) % 63 - 31; }
uint16_t group_d(int g) { return g == 0 ? 0x34CD : 0x2E66; }
size_t group_at(bool q3, int g) { return (size_t)g * (8 + 8 * (q3 ? 12 : 16)); }  // byte offset of group g

Bytes sub_scaled_rows(bool q3) {
  const int bb = q3 ? 12 : 16;
  Bytes b(2 * 8 + 10 * bb, 0);
  for (int g = 0; g < 2; ++g) {
    uint8_t* h = b.data() + group_at(q3, g);
    h[0] = (uint8_t)(group_d(g) & 0xFF), h[1] = (uint8_t)(group_d(g) >> 8);
    uint64_t bits = 0;  // s_j & 63 at bits 6j.. of the 48-bit little-endian integer of bytes 2..7
    for (int j = 0; j < 8 && g * 8 + j < 10; ++j) bits |= (uint64_t)(sub_scale(g * 8 + j) & 63) << (6 * j);
    for (int k = 0; k < 6; ++k) h[2 + k] = (uint8_t)(bits >> (8 * k));
  }
  for (int i = 0; i < 10; ++i) {
    uint8_t* p = b.data() + group_at(q3, i / 8) + 8 + i % 8 * bb;
    for (int j = 0; j < 32; ++j) {
      const int c = i % 2 * 32 + j, code = c < 40 ? (i / 2 * 40 + c) % (q3 ? 8 : 16) : q3 ? 4 : 8;
      if (!q3) {
        p[j % 16] |= (uint8_t)(code << (j < 16 ? 0 : 4));
      } else {
        p[j % 8] |= (uint8_t)((code & 3) << (2 * (j / 8)));
        p[8 + j / 8] |= (uint8_t)((code >> 2) << (j % 8));
      }
    }
  }
  return b;
}

// Value (r, c) of that tensor: f16_round(s_i * D) * (code - zero).
float sub_scaled_value(bool q3, int r, int c) {
  const int i = r * 2 + c / 32;
  const float d = qtf::f16_to_f32(qtf::f32_to_f16((float)sub_scale(i) * qtf::f16_to_f32(group_d(i / 8))));
  return d * (float)((r * 40 + c) % (q3 ? 8 : 16) - (q3 ? 4 : 8));
}

// Nibble c of a q4 row (byte 2 + j of a block: value j low, value j + 16 high).
int q4_nibble(const uint8_t* row, int c) {
  const uint8_t* p = row + c / 32 * 18;
  const int j = c % 32;
  return j < 16 ? p[2 + j] & 15 : p[2 + j - 16] >> 4;
}

Bytes make_file() {
  Writer w;
  w.add_str("qtf.arch", "qtensorformer");
  w.add_i64("model.d_model", 8);
  w.add_f64("model.alpha", 1.5);
  w.add_i64_array("model.tt.d_factors", {2, 4});
  w.add_f64_array("weights", {0.25, -2.0});
  w.add_str_array("tokenizer.tokens", {"a", "b", "\xC3\xA9"});
  std::vector<float> a(20), b(8);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f * (float)i;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -1.0f * (float)i;
  w.add_f32("alpha.w", {4, 5}, a.data());
  w.add_f32("beta.b", {8}, b.data());
  int8_t q[4] = {1, -2, 3, -4};
  w.add_tensor("gamma.q", DType::i8, {4}, q, 0.5f);
  const float row_scales[3] = {0.25f, 1.f, 2.f};  // q8: a scale per row, stored before the values
  int8_t q8[15];
  for (int i = 0; i < 15; ++i) q8[i] = (int8_t)(i - 7);
  w.add_q8("delta.q8", {3, 5}, row_scales, q8);
  w.add_tensor("eps.q4", DType::q4, {2, 40}, q4_rows().data());
  w.add_tensor("zeta.q3", DType::q3, {2, 40}, q3_rows().data());
  w.add_tensor("eta.q4s", DType::q4s, {5, 40}, sub_scaled_rows(false).data());
  w.add_tensor("theta.q3s", DType::q3s, {5, 40}, sub_scaled_rows(true).data());
  return w.finish();
}

uint64_t rd(const Bytes& f, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | f[at + i];
  return v;
}
void wr(Bytes* f, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) (*f)[at + i] = (uint8_t)(v >> (8 * i));
}
void fix_crc(Bytes* f) {
  wr(f, kChecksumOffset, 0, 4);
  wr(f, kChecksumOffset, crc32_update(0, f->data(), f->size()), 4);
}

// Sets sub-scale j of the q4s / q3s group at byte `at` to s (any 6-bit pattern).
void set_sub(Bytes* f, size_t at, int j, int s) {
  const uint64_t bits = rd(*f, at + 2, 6);
  wr(f, at + 2, (bits & ~(63ull << (6 * j))) | (uint64_t)(s & 63) << (6 * j), 6);
}

// Byte position of tensor entry i's fields (the file layout of make_file()).
struct EntryPos {
  size_t name, dtype, ndim, dims, offset, size, scale;
};
EntryPos tensor_entry(const Bytes& f, int index) {
  size_t p = (size_t)rd(f, 40, 8);
  for (int i = 0;; ++i) {
    EntryPos e;
    e.name = p;
    size_t name_len = (size_t)rd(f, p, 4);
    e.dtype = p + 4 + name_len;
    e.ndim = e.dtype + 1;
    int nd = (int)f[e.ndim];
    e.dims = e.ndim + 3;
    e.offset = e.dims + 8 * nd;
    e.size = e.offset + 8;
    e.scale = e.size + 8;
    if (i == index) return e;
    p = e.scale + 4;
  }
}

Status open_bytes(const Bytes& f) {
  ModelFile m;
  return m.open(f.data(), f.size());
}

// Applies a damage function, fixes the checksum (so the specific check fires), expects code + words.
void expect_damage(void (*damage)(Bytes*), Err code, const char* words) {
  Bytes f = make_file();
  damage(&f);
  fix_crc(&f);
  Status st = open_bytes(f);
  const std::string got = std::string(err_name(st.code())) + ": " + st.message();
  CHECK_MESSAGE(st.code() == code, got);
  CHECK_MESSAGE(std::strstr(st.message(), words) != nullptr, got);
}

}  // namespace

TEST_CASE("a valid file opens and its contents read back") {
  Bytes f = make_file();
  ModelFile m;
  REQUIRE(m.open(f.data(), f.size()).ok());
  CHECK(m.version() == 1);
  CHECK(m.meta_count() == 6);
  CHECK(m.tensor_count() == 8);

  Str s;
  REQUIRE(m.get_str("qtf.arch", &s).ok());
  CHECK(s.equals("qtensorformer"));
  int64_t d = 0;
  REQUIRE(m.get_i64("model.d_model", &d).ok());
  CHECK(d == 8);
  double alpha = 0;
  REQUIRE(m.get_f64("model.alpha", &alpha).ok());
  CHECK(alpha == 1.5);
  CHECK(m.get_i64("model.alpha", &d).code() == Err::bad_value);
  CHECK(m.get_i64("nope", &d).code() == Err::missing);
  int64_t keep = 42;
  CHECK(m.get_i64_or("nope", &keep).ok());
  CHECK(keep == 42);

  MetaEntry e;
  REQUIRE(m.find_meta("model.tt.d_factors", &e));
  int64_t v = 0;
  CHECK(e.count == 2);
  CHECK((e.i64_at(1, &v) && v == 4));
  CHECK_FALSE(e.i64_at(2, &v));
  REQUIRE(m.find_meta("tokenizer.tokens", &e));
  CHECK(e.count == 3);
  CHECK((e.str_at(2, &s) && s.equals("\xC3\xA9")));
  REQUIRE(m.find_meta("weights", &e));
  double w = 0;
  CHECK((e.f64_at(1, &w) && w == -2.0));

  TensorInfo t;
  REQUIRE(m.find_tensor("alpha.w", &t));
  CHECK(t.dtype == DType::f32);
  CHECK(t.ndim == 2);
  CHECK(t.dims[0] == 4);
  CHECK(t.dims[1] == 5);
  CHECK(t.offset % 64 == 0);
  // Zero copy: the data pointer lies inside the caller's buffer.
  CHECK(static_cast<const uint8_t*>(t.data) == f.data() + t.offset);
  CHECK(static_cast<const float*>(t.data)[5] == 2.5f);
  REQUIRE(m.find_tensor("gamma.q", &t));
  CHECK(t.dtype == DType::i8);
  CHECK(t.scale == 0.5f);
  CHECK(t.values == t.data);
  CHECK(t.row_scales == nullptr);
  REQUIRE(m.find_tensor("delta.q8", &t));
  CHECK(t.dtype == DType::q8);
  CHECK(t.rows() == 3);
  CHECK(t.size == 3 * 4 + 15);  // the scales, then the values
  REQUIRE(t.row_scales != nullptr);
  CHECK(reinterpret_cast<const uint8_t*>(t.row_scales) == f.data() + t.offset);
  CHECK(t.row_scales[2] == 2.f);
  CHECK(static_cast<const uint8_t*>(t.values) == f.data() + t.offset + 12);
  CHECK(static_cast<const int8_t*>(t.values)[14] == 7);
  REQUIRE(m.find_tensor("eps.q4", &t));
  CHECK(t.dtype == DType::q4);
  CHECK(t.size == 2 * 2 * 18);  // 2 rows of 2 blocks (the second padded)
  CHECK(t.values == t.data);
  const qtf::Weights q4 = qtf::Weights::q4(t.values, 40);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 40; ++c) CHECK(q4.value(r * 40 + c, r) == 0.5f * (float)((r * 40 + c) % 16 - 8));
  REQUIRE(m.find_tensor("zeta.q3", &t));
  CHECK(t.dtype == DType::q3);
  CHECK(t.size == 2 * 2 * 14);
  std::vector<uint8_t> as_q4(2 * (size_t)qtf::q4_row_bytes(40));
  for (int r = 0; r < 2; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(t.values) + r * qtf::q3_row_bytes(40);
    qtf::q3_row_to_q4(row, 40, as_q4.data() + r * qtf::q4_row_bytes(40));
    for (int c = 0; c < 40; ++c) CHECK(qtf::q3_value(row, c) == 0.5f * (float)((r * 40 + c) % 8 - 4));
  }
  const qtf::Weights q3 = qtf::Weights::q4(as_q4.data(), 40);  // the loader's expansion: the same values
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 64; ++c) CHECK(q4_nibble(as_q4.data() + r * qtf::q4_row_bytes(40), c) == (c < 40 ? (r * 40 + c) % 8 + 4 : 8));
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 40; ++c) CHECK(q3.value(r * 40 + c, r) == 0.5f * (float)((r * 40 + c) % 8 - 4));
  for (bool q3s : {false, true}) {  // q4s, q3s: expanded to q4 blocks, the file's values (sub_scaled_value)
    REQUIRE(m.find_tensor(q3s ? "theta.q3s" : "eta.q4s", &t));
    CHECK(t.dtype == (q3s ? DType::q3s : DType::q4s));
    CHECK(std::string(dtype_name(t.dtype)) == (q3s ? "q3s" : "q4s"));
    CHECK(t.size == 2 * 8 + 10 * (q3s ? 12 : 16));  // two groups' headers, ten blocks' codes
    uint64_t first = 0;
    CHECK(count_nonfinite(t, &first) == 0);
    std::vector<uint8_t> blocks(5 * (size_t)qtf::q4_row_bytes(40));
    qtf::sblocks_to_q4(static_cast<const uint8_t*>(t.values), q3s, 0, 10, blocks.data());
    const qtf::Weights wq = qtf::Weights::q4(blocks.data(), 40);
    for (int r = 0; r < 5; ++r) {
      for (int c = 0; c < 40; ++c) CHECK(wq.value(r * 40 + c, r) == sub_scaled_value(q3s, r, c));
      for (int c = 40; c < 64; ++c) CHECK(q4_nibble(blocks.data() + r * qtf::q4_row_bytes(40), c) == 8);
    }
    CHECK(sub_scaled_value(q3s, 0, 0) != 0.f);  // the values are not all zeros
    CHECK(sub_scaled_value(q3s, 4, 39) != 0.f);
  }
  CHECK_FALSE(m.find_tensor("missing", &t));
}

TEST_CASE("CRC-32 matches the zlib reference value") {
  const char* s = "123456789";
  CHECK(crc32_update(0, s, 9) == 0xCBF43926u);
  CHECK(crc32_update(crc32_update(0, s, 4), s + 4, 5) == 0xCBF43926u);
}

TEST_CASE("every CRC-32 path this CPU runs equals the portable one at every length, alignment and start value") {
  // x86-64 folds 64 bytes at a time with PCLMULQDQ, 256 with VPCLMULQDQ; lengths around the 16/64/256-byte
  // boundaries, odd alignments and chained calls must give the portable result.
  std::vector<uint8_t> b(4096 + 64);
  uint32_t x = 0x9E3779B9u;
  for (auto& v : b) v = (uint8_t)((x = x * 1664525u + 1013904223u) >> 24);
  int paths = 0;
  for (CrcPath path : {CrcPath::portable, CrcPath::pclmul, CrcPath::vpclmul}) {
    if (!crc32_path_available(path)) continue;
    ++paths;
    MESSAGE("CRC-32 path " << (int)path);
    for (size_t n : {0, 1, 15, 16, 63, 64, 65, 79, 80, 127, 128, 129, 191, 255, 256, 257, 271, 319, 320, 511, 512,
                     513, 767, 1000, 4096})
      for (size_t off = 0; off < 8; ++off)
        for (uint32_t start : {0u, 0xFFFFFFFFu, 0x12345678u}) {
          CAPTURE(n); CAPTURE(off); CAPTURE(start);
          CHECK(crc32_update_with(path, start, b.data() + off, n) == crc32_update_portable(start, b.data() + off, n));
        }
    CHECK(crc32_update_with(path, crc32_update_with(path, 0, b.data(), 100), b.data() + 100, 3000) ==
          crc32_update_portable(0, b.data(), 3100));
  }
  CHECK(crc32_update(0, b.data(), 4096) == crc32_update_portable(0, b.data(), 4096));
#if defined(__x86_64__)
  CHECK(paths >= 2);  // every x86-64 CPU this runs on has PCLMULQDQ since 2010: the fast path is exercised
#endif
}

TEST_CASE("UTF-8 validation") {
  CHECK(utf8_valid("plain", 5));
  CHECK(utf8_valid("\xE2\x82\xAC", 3));           // euro sign
  CHECK(utf8_valid("\xF0\x9F\x98\x80", 4));       // emoji
  CHECK_FALSE(utf8_valid("\xC0\xAF", 2));         // overlong '/'
  CHECK_FALSE(utf8_valid("\xED\xA0\x80", 3));     // surrogate
  CHECK_FALSE(utf8_valid("\xF4\x90\x80\x80", 4)); // > U+10FFFF
  CHECK_FALSE(utf8_valid("\xE2\x82", 2));         // cut short
  CHECK_FALSE(utf8_valid("\x80", 1));             // stray continuation
}

TEST_CASE("f16 conversion") {
  CHECK(format::f16_to_f32(0x3C00) == 1.0f);
  CHECK(format::f16_to_f32(0xC000) == -2.0f);
  CHECK(format::f16_to_f32(0x0001) == 5.9604644775390625e-8f);  // smallest subnormal
  CHECK(format::f16_to_f32(0x7BFF) == 65504.0f);
}

TEST_CASE("every truncation is rejected as truncated or damaged") {
  Bytes f = make_file();
  for (size_t n = 0; n < f.size(); ++n) {
    ModelFile m;
    Status st = m.open(f.data(), n);
    REQUIRE_MESSAGE(!st.ok(), "length ", n);
    const std::string got = "length " + std::to_string(n) + ": " + st.message();
    CHECK_MESSAGE(st.code() == Err::truncated, got);
  }
  ModelFile m;
  CHECK(m.open(nullptr, 100).code() == Err::invalid_argument);
}

TEST_CASE("header damage") {
  expect_damage([](Bytes* f) { (*f)[0] = 'X'; }, Err::bad_magic, "magic");
  expect_damage([](Bytes* f) { wr(f, 8, 2, 4); }, Err::bad_version, "version 2");
  expect_damage([](Bytes* f) { wr(f, 12, 1, 4); }, Err::bad_value, "reserved");
  expect_damage([](Bytes* f) { f->push_back(0); wr(f, 16, f->size() - 1, 8); }, Err::bad_value, "trailing");
  expect_damage([](Bytes* f) { wr(f, 24, 40, 8); }, Err::out_of_range, "overlaps the header");
  expect_damage([](Bytes* f) { wr(f, 32, ~0ull - 8, 8); }, Err::overflow, "overflows");
  expect_damage([](Bytes* f) { wr(f, 40, rd(*f, 40, 8) - 1, 8); }, Err::overlap, "overlaps the metadata");
  expect_damage([](Bytes* f) { wr(f, 56, rd(*f, 40, 8), 8); }, Err::overlap, "overlaps the tensor table");
  expect_damage([](Bytes* f) { wr(f, 56, rd(*f, 56, 8) + 8, 8); }, Err::misaligned, "data offset");
  expect_damage([](Bytes* f) { wr(f, 56, f->size() + 64, 8); }, Err::out_of_range, "past the end");
  expect_damage([](Bytes* f) { wr(f, 68, 5000, 4); }, Err::bad_value, "limit");
}

TEST_CASE("checksum damage") {
  Bytes f = make_file();
  f[f.size() - 1] ^= 0x01;  // a flipped bit in the last tensor
  Status st = open_bytes(f);
  CHECK(st.code() == Err::bad_checksum);
  CHECK(std::strstr(st.message(), "checksum mismatch") != nullptr);
}

TEST_CASE("metadata damage") {
  // First metadata entry: key "qtf.arch" at offset 80 -> type byte at 80+4+8.
  expect_damage([](Bytes* f) { (*f)[92] = 9; }, Err::bad_value, "unknown value type 9");
  expect_damage([](Bytes* f) { (*f)[84] = 0xFF; }, Err::bad_utf8, "UTF-8");
  expect_damage([](Bytes* f) { (*f)[93 + 4] = 0xC0; }, Err::bad_utf8, "string value");
  expect_damage([](Bytes* f) { wr(f, 80, 0, 4); }, Err::bad_value, "name length 0");
  expect_damage([](Bytes* f) { wr(f, 64, rd(*f, 64, 4) - 1, 4); }, Err::bad_value, "unused bytes");
  expect_damage([](Bytes* f) { wr(f, 64, rd(*f, 64, 4) + 1, 4); }, Err::truncated, "past the metadata");
  expect_damage([](Bytes* f) { wr(f, 93, 0xFFFFFFF0u, 4); }, Err::truncated, "past the metadata");
  Writer w;
  w.add_i64("k", 1);
  w.add_i64("k", 2);
  Bytes dup = w.finish();
  Status st = open_bytes(dup);
  CHECK(st.code() == Err::duplicate_name);
  CHECK(std::strstr(st.message(), "'k' appears twice") != nullptr);
}

TEST_CASE("tensor table damage") {
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 0).dtype] = 9; }, Err::bad_dtype, "unknown dtype 9");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 1).ndim] = 0; }, Err::bad_shape, "ndim 0");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 1).ndim] = 5; }, Err::bad_shape, "ndim 5");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 0).ndim + 1] = 1; }, Err::bad_value, "reserved");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 0).dims, 0, 8); }, Err::bad_shape, "dimension 0 is 0");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 0).dims, 5, 8); }, Err::bad_shape, "does not match shape");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 0).dims, 1ull << 62, 8); }, Err::overflow, "overflows");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 1).offset, rd(*f, tensor_entry(*f, 1).offset, 8) + 4, 8); },
                Err::misaligned, "not a multiple of 64");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 0).offset, 0, 8); }, Err::out_of_range, "before the data");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 2).offset, f->size() + 64 - f->size() % 64, 8); },
                Err::out_of_range, "past the end");
  expect_damage(
      [](Bytes* f) {
        EntryPos e = tensor_entry(*f, 0);
        wr(f, e.offset, ~0ull - 63, 8);  // aligned, huge: offset + size overflows
      },
      Err::overflow, "offset + size");
  expect_damage(
      [](Bytes* f) {  // second tensor placed on top of the first
        wr(f, tensor_entry(*f, 1).offset, rd(*f, tensor_entry(*f, 0).offset, 8), 8);
      },
      Err::overlap, "overlaps 'alpha.w'");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 0).name + 4] = 0xFE; }, Err::bad_utf8, "UTF-8");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 2).scale, 0, 4); }, Err::bad_value, "i8 scale");
  expect_damage([](Bytes* f) { wr(f, 68, rd(*f, 68, 4) - 1, 4); }, Err::bad_value, "unused bytes");
  // q8: the size must count the row scales, and every scale must be finite and > 0 (like i8's one).
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 3).dtype] = 8; }, Err::bad_dtype, "unknown dtype 8");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 3).size, 15, 8); }, Err::bad_shape, "a scale per row included");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 3).dims, 4, 8); }, Err::bad_shape, "a scale per row included");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 2).dtype] = 3; }, Err::bad_shape, "does not match shape");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 3).offset, 8) + 4, 0x7FC00000u, 4); }, Err::bad_value,
                "q8 scale of row 1 is nan");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 3).offset, 8) + 8, 0, 4); }, Err::bad_value,
                "q8 scale of row 2 is 0");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 3).offset, 8), 0xBF800000u, 4); }, Err::bad_value,
                "q8 scale of row 0 is -1");
  // q4: size from the shape in whole blocks per row (overflow checked), every block's scale finite, a
  // row's tail block padded with nibbles 8.
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 4).size, 71, 8); }, Err::bad_shape, "18 per block of 32");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 4).dims + 8, 65, 8); }, Err::bad_shape, "18 per block of 32");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 4).dims, 3, 8); }, Err::bad_shape, "does not match shape");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 1).dtype] = 4; }, Err::bad_shape, "does not match shape");
  expect_damage(
      [](Bytes* f) {  // 2^60 rows of one value: 2^60 blocks of 18 bytes overflow 64 bits
        wr(f, tensor_entry(*f, 4).dims, 1ull << 60, 8);
        wr(f, tensor_entry(*f, 4).dims + 8, 1, 8);
      },
      Err::overflow, "byte size overflows");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 4).offset, 8) + 2 * 18, 0x7C00, 2); }, Err::bad_value,
                "q4 scale of row 1, block 0 is not finite");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 4).offset, 8) + 18, 0xFE00, 2); }, Err::bad_value,
                "q4 scale of row 0, block 1 is not finite");
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 4).offset, 8) + 18 + 2 + 8] &= 0xF0; }, Err::bad_value,
                "q4 row 0 pads its last block with nibble 0 at value 40, not 8");
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 4).offset, 8) + 3 * 18 + 2 + 15] ^= 0x10; },
                Err::bad_value, "q4 row 1 pads its last block with nibble 9 at value 63, not 8");
  // q3: the same rules with 14-byte blocks and codes 4 as the padding.
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 5).size, 57, 8); }, Err::bad_shape, "14 per block of 32");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 5).dims + 8, 65, 8); }, Err::bad_shape, "14 per block of 32");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 4).dtype] = 5; }, Err::bad_shape, "does not match shape");
  expect_damage(
      [](Bytes* f) {  // 2^61 rows of one value: 2^61 blocks of 14 bytes overflow 64 bits
        wr(f, tensor_entry(*f, 5).dims, 1ull << 61, 8);
        wr(f, tensor_entry(*f, 5).dims + 8, 1, 8);
      },
      Err::overflow, "byte size overflows");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 5).offset, 8) + 2 * 14, 0x7C00, 2); }, Err::bad_value,
                "q3 scale of row 1, block 0 is not finite");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 5).offset, 8) + 14, 0xFE00, 2); }, Err::bad_value,
                "q3 scale of row 0, block 1 is not finite");
  // value 40 (block 1, j 8): low pair in byte 2 + 0 at bits 2..3, third bit at byte 11 bit 0 (code 4 = 1 << 2)
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 5).offset, 8) + 14 + 11] &= 0xFE; }, Err::bad_value,
                "q3 row 0 pads its last block with code 0 at value 40, not 4");
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 5).offset, 8) + 3 * 14 + 2 + 7] ^= 0x40; },
                Err::bad_value, "q3 row 1 pads its last block with code 5 at value 63, not 4");
  // q4s (entry 6), q3s (entry 7): size from the shape (the headers included, overflow checked), each D
  // finite, each sub-scale in -31..31 and 0 where the last group lacks its block, each block scale
  // f16(s_j * D) finite, the padding the zero code.
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 6).size, 175, 8); }, Err::bad_shape,
                "16 per block of 32 values along each row and 8 per group of 8 blocks");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 7).size, 137, 8); }, Err::bad_shape,
                "12 per block of 32 values along each row and 8 per group of 8 blocks");
  expect_damage([](Bytes* f) { wr(f, tensor_entry(*f, 6).dims, 6, 8); }, Err::bad_shape, "does not match shape");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 6).dtype] = 7; }, Err::bad_shape, "does not match shape");
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 4).dtype] = 7; }, Err::bad_shape, "does not match shape");
  // the q4 tensor read as q4s: the same 72 bytes (one group of 4 blocks), refused by its sub-scales
  expect_damage([](Bytes* f) { (*f)[tensor_entry(*f, 4).dtype] = 6; }, Err::bad_value, "q4s sub-scale 4 of group 0 is -13, not 0");
  expect_damage(
      [](Bytes* f) {  // 2^60 - 1 blocks of 16 bytes fit 64 bits; their 2^57 headers of 8 do not
        wr(f, tensor_entry(*f, 6).dims, (1ull << 60) - 1, 8);
        wr(f, tensor_entry(*f, 6).dims + 8, 1, 8);
      },
      Err::overflow, "byte size overflows");
  expect_damage(
      [](Bytes* f) {  // 2^62 blocks of 12 bytes overflow 64 bits
        wr(f, tensor_entry(*f, 7).dims, 1ull << 62, 8);
        wr(f, tensor_entry(*f, 7).dims + 8, 1, 8);
      },
      Err::overflow, "byte size overflows");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 6).offset, 8) + group_at(false, 1), 0x7E00, 2); },
                Err::bad_value, "q4s scale D of group 1 is not finite");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 7).offset, 8), 0xFC00, 2); }, Err::bad_value,
                "q3s scale D of group 0 is not finite");
  expect_damage([](Bytes* f) { set_sub(f, rd(*f, tensor_entry(*f, 6).offset, 8), 3, -32); }, Err::bad_value,
                "q4s sub-scale 3 of group 0 is -32 (not in -31..31)");
  expect_damage([](Bytes* f) { set_sub(f, rd(*f, tensor_entry(*f, 7).offset, 8) + group_at(true, 1), 7, -32); },
                Err::bad_value, "q3s sub-scale 7 of group 1 is -32");
  expect_damage([](Bytes* f) { set_sub(f, rd(*f, tensor_entry(*f, 6).offset, 8) + group_at(false, 1), 2, 1); },
                Err::bad_value, "q4s sub-scale 2 of group 1 is 1, not 0: the last group has no block 2");
  expect_damage([](Bytes* f) { set_sub(f, rd(*f, tensor_entry(*f, 7).offset, 8) + group_at(true, 1), 7, -31); },
                Err::bad_value, "q3s sub-scale 7 of group 1 is -31, not 0");
  // D = 65504: block 0's sub-scale -28 gives -28 * 65504, beyond f16 (its sub-scale 4 is 0: 0 * D is finite)
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 6).offset, 8), 0x7BFF, 2); }, Err::bad_value,
                "q4s scale of row 0, block 0 (group 0, sub-scale 0 times D) is not finite");
  expect_damage([](Bytes* f) { wr(f, rd(*f, tensor_entry(*f, 7).offset, 8) + group_at(true, 1), 0x7800, 2); },
                Err::bad_value, "q3s scale of row 4, block 0 (group 1, sub-scale 0 times D) is not finite");
  // row 4's last block is block 9 (group 1, j 1); row 0's, block 1 (group 0, j 1). Value 40: j 8.
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 6).offset, 8) + group_at(false, 1) + 8 + 16 + 8] &= 0xF0; },
                Err::bad_value, "q4s row 4 pads its last block with nibble 0 at value 40, not 8");
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 6).offset, 8) + 8 + 16 + 15] ^= 0x10; }, Err::bad_value,
                "q4s row 0 pads its last block with nibble 9 at value 63, not 8");
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 7).offset, 8) + group_at(true, 1) + 8 + 12 + 9] &= 0xFE; },
                Err::bad_value, "q3s row 4 pads its last block with code 0 at value 40, not 4");
  expect_damage([](Bytes* f) { (*f)[rd(*f, tensor_entry(*f, 7).offset, 8) + 8 + 12 + 7] ^= 0x40; }, Err::bad_value,
                "q3s row 0 pads its last block with code 5 at value 63, not 4");
  {  // D zero, negative or subnormal is a valid D
    Bytes f = make_file();
    const size_t at = (size_t)rd(f, tensor_entry(f, 6).offset, 8);
    wr(&f, at, 0x8001, 2);  // -2^-24
    wr(&f, at + group_at(false, 1), 0x0000, 2);
    fix_crc(&f);
    CHECK(open_bytes(f).ok());
  }

  Writer w;
  float x[2] = {1, 2};
  w.add_f32("same", {2}, x);
  w.add_f32("same", {2}, x);
  Status st = open_bytes(w.finish());
  CHECK(st.code() == Err::duplicate_name);
  CHECK(std::strstr(st.message(), "'same' appears twice") != nullptr);
}

TEST_CASE("random damage never crashes and is always reported") {
  // Mutate bytes (with the checksum fixed so the deeper checks run) and make sure open() either
  // accepts a still-valid file or returns an error with a message; ASan/UBSan builds check bounds.
  const Bytes base = make_file();
  std::mt19937 rng(1234);
  int rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes f = base;
    int flips = 1 + (int)(rng() % 4);
    for (int k = 0; k < flips; ++k) f[rng() % 200 < 150 ? rng() % (size_t)(rd(base, 56, 8)) : rng() % f.size()] = (uint8_t)rng();
    if (rng() % 3 == 0) f.resize(rng() % f.size());
    if (f.size() > kChecksumOffset + 4) fix_crc(&f);
    ModelFile m;
    Status st = m.open(f.data(), f.size());
    if (!st.ok()) {
      ++rejected;
      CHECK(std::strlen(st.message()) > 5);
    } else {  // accepted: walking it must stay in bounds
      uint64_t cur = 0;
      TensorInfo t;
      while (m.next_tensor(&cur, &t)) CHECK(t.offset + t.size <= f.size());
    }
  }
  CHECK(rejected > 1000);
}
