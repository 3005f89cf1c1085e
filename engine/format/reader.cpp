// Verification follows docs/format.md rule by rule. All arithmetic on file-controlled numbers is
// overflow-checked; every read goes through Cursor, which never reads past its section.
#include "format/reader.h"

#include <cmath>
#include <cstring>

#include "kernels/kernels.h"

namespace qtf::format {
namespace {

uint64_t load_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  if (a > UINT64_MAX - b) return true;
  *out = a + b;
  return false;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > UINT64_MAX / a) return true;
  *out = a * b;
  return false;
}

// A bounded reader over [pos, end) of the buffer.
struct Cursor {
  const uint8_t* base;
  uint64_t pos, end;
  bool skip(uint64_t n) {
    if (n > end - pos) return false;
    pos += n;
    return true;
  }
  bool uint(int n, uint64_t* v) {
    if ((uint64_t)n > end - pos) return false;
    *v = load_le(base + pos, n);
    pos += n;
    return true;
  }
  bool str(Str* s) {
    uint64_t len;
    if (!uint(4, &len)) return false;
    if (len > end - pos) return false;
    s->data = reinterpret_cast<const char*>(base + pos);
    s->size = (uint32_t)len;
    pos += len;
    return true;
  }
};

// Name checks shared by metadata keys and tensor names.
Status check_name(const Str& s, const char* what, unsigned index) {
  if (s.size == 0 || s.size > kMaxNameBytes)
    return Status::error(Err::bad_value, "%s #%u: name length %u is not in 1..%u", what, index, (unsigned)s.size,
                         (unsigned)kMaxNameBytes);
  if (!utf8_valid(s.data, s.size))
    return Status::error(Err::bad_utf8, "%s #%u: name is not valid UTF-8", what, index);
  return Status::success();
}

bool str_eq(const Str& a, const Str& b) {
  return a.size == b.size && std::memcmp(a.data, b.data, a.size) == 0;
}

// Parses one metadata entry at c (verifying it fully when verify is set).
Status parse_meta(Cursor* c, unsigned index, bool verify, MetaEntry* e) {
  uint64_t start = c->pos, type;
  if (!c->str(&e->key) || !c->uint(1, &type))
    return Status::error(Err::truncated, "metadata #%u at byte %llu: entry runs past the metadata section",
                         index, (unsigned long long)start);
  if (verify) QTF_TRY(check_name(e->key, "metadata", index));
  if (type < 1 || type > 6)
    return Status::error(Err::bad_value, "metadata '%.*s': unknown value type %llu", (int)e->key.size,
                         e->key.data, (unsigned long long)type);
  e->type = (MetaType)type;
  e->value = c->base + c->pos;
  bool ok = true;
  uint64_t n = 1;
  switch (e->type) {
    case MetaType::i64:
    case MetaType::f64: ok = c->skip(8); break;
    case MetaType::str: {
      Str s;
      ok = c->str(&s);
      n = s.size;
      if (ok && verify && (s.size > kMaxStringBytes || !utf8_valid(s.data, s.size)))
        return Status::error(Err::bad_utf8, "metadata '%.*s': string value is not valid UTF-8 (or too long)",
                             (int)e->key.size, e->key.data);
      break;
    }
    case MetaType::i64_array:
    case MetaType::f64_array:
    case MetaType::str_array: {
      ok = c->uint(4, &n);
      if (ok && n > kMaxArrayCount)
        return Status::error(Err::bad_value, "metadata '%.*s': array count %llu exceeds %u", (int)e->key.size,
                             e->key.data, (unsigned long long)n, (unsigned)kMaxArrayCount);
      if (!ok) break;
      if (e->type != MetaType::str_array) {
        ok = c->skip(n * 8);
        break;
      }
      for (uint64_t i = 0; ok && i < n; ++i) {
        Str s;
        ok = c->str(&s);
        if (ok && verify && !utf8_valid(s.data, s.size))
          return Status::error(Err::bad_utf8, "metadata '%.*s': element %llu is not valid UTF-8",
                               (int)e->key.size, e->key.data, (unsigned long long)i);
      }
      break;
    }
  }
  if (!ok)
    return Status::error(Err::truncated, "metadata '%.*s': value runs past the metadata section",
                         (int)e->key.size, e->key.data);
  e->count = (uint32_t)n;
  return Status::success();
}

// A q4 or q3 tensor's blocks (its size already checked): every scale finite, and a row's tail block
// padded with zeros (q4: nibbles 8, q3: codes 4), so that a kernel may run a whole block over it.
Status check_blocks(const TensorInfo& t, const uint8_t* p, uint64_t elements) {
  const int nl = (int)t.name.size;
  const char* nm = t.name.data;
  const bool q4 = t.dtype == DType::q4;
  const char* type = q4 ? "q4" : "q3";
  const uint64_t cols = t.dims[t.ndim - 1], rows = elements / cols, step = q4 ? kQ4BlockBytes : kQ3BlockBytes;
  const uint64_t blocks = (cols + kQ4Block - 1) / kQ4Block, tail = cols % kQ4Block;
  const int zero = q4 ? 8 : 4;
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t b = 0; b < blocks; ++b, p += step) {
      if (((p[0] | p[1] << 8) & 0x7C00) == 0x7C00)
        return Status::error(Err::bad_value, "tensor '%.*s': %s scale of row %llu, block %llu is not finite", nl, nm,
                             type, (unsigned long long)r, (unsigned long long)b);
      for (uint64_t j = b + 1 == blocks && tail ? tail : kQ4Block; j < (uint64_t)kQ4Block; ++j) {
        const int code = !q4 ? q3_code(p, (int)j) : j < 16 ? p[2 + j] & 15 : p[2 + j - 16] >> 4;
        if (code != zero)
          return Status::error(Err::bad_value,
                               "tensor '%.*s': %s row %llu pads its last block with %s %d at value %llu, not %d (zero)",
                               nl, nm, type, (unsigned long long)r, q4 ? "nibble" : "code", code, (unsigned long long)(b * kQ4Block + j), zero);
      }
    }
  return Status::success();
}

// A q4s or q3s tensor's groups (its size already checked): each D finite, each sub-scale in -31..31 and
// 0 for the blocks the last group lacks, each block scale f16(s_j * D) finite, and a row's tail block
// padded with zeros (q4s: nibbles 8, q3s: codes 4), as check_blocks for q4 and q3.
Status check_sub_scaled(const TensorInfo& t, const uint8_t* p, uint64_t elements) {
  const int nl = (int)t.name.size;
  const char* nm = t.name.data;
  const bool q3 = t.dtype == DType::q3s;
  const char* type = dtype_name(t.dtype);
  const uint64_t cols = t.dims[t.ndim - 1], rows = elements / cols, nb = (cols + kQ4Block - 1) / kQ4Block;
  const uint64_t blocks = rows * nb, groups = (blocks + kSGroup - 1) / kSGroup, tail = cols % kQ4Block;
  for (uint64_t g = 0; g < groups; ++g) {
    const uint8_t* h = p + sgroup_offset(q3, g);
    if (((h[0] | h[1] << 8) & 0x7C00) == 0x7C00)
      return Status::error(Err::bad_value, "tensor '%.*s': %s scale D of group %llu is not finite", nl, nm, type,
                           (unsigned long long)g);
    for (int j = 0; j < kSGroup; ++j) {
      const int s = sgroup_sub(h, j);
      const uint64_t i = g * kSGroup + (uint64_t)j;
      if (s == -32)
        return Status::error(Err::bad_value, "tensor '%.*s': %s sub-scale %d of group %llu is -32 (not in -31..31)", nl,
                             nm, type, j, (unsigned long long)g);
      if (i >= blocks && s != 0)
        return Status::error(Err::bad_value, "tensor '%.*s': %s sub-scale %d of group %llu is %d, not 0: the last group "
                             "has no block %d", nl, nm, type, j, (unsigned long long)g, s, j);
      if (i < blocks && (sgroup_scale(h, j) & 0x7C00) == 0x7C00)
        return Status::error(Err::bad_value, "tensor '%.*s': %s scale of row %llu, block %llu (group %llu, sub-scale %d "
                             "times D) is not finite", nl, nm, type, (unsigned long long)(i / nb),
                             (unsigned long long)(i % nb), (unsigned long long)g, j);
    }
  }
  for (uint64_t r = 0; tail && r < rows; ++r) {
    const uint64_t i = r * nb + nb - 1;
    const uint8_t* codes = p + sgroup_offset(q3, i / kSGroup) + kSGroupHeader + i % kSGroup * sblock_bytes(q3);
    for (uint64_t j = tail; j < (uint64_t)kQ4Block; ++j) {
      const int code = sblock_code(codes, q3, (int)j);
      if (code != (q3 ? 4 : 8))
        return Status::error(Err::bad_value,
                             "tensor '%.*s': %s row %llu pads its last block with %s %d at value %llu, not %d (zero)", nl,
                             nm, type, (unsigned long long)r, q3 ? "code" : "nibble", code,
                             (unsigned long long)((nb - 1) * kQ4Block + j), q3 ? 4 : 8);
    }
  }
  return Status::success();
}

// Parses one tensor entry at c; verify checks everything except ordering/duplicates (done by caller).
Status parse_tensor(Cursor* c, unsigned index, bool verify, uint64_t data_offset, uint64_t file_size,
                    TensorInfo* t) {
  uint64_t start = c->pos, dtype, ndim, reserved;
  if (!c->str(&t->name) || !c->uint(1, &dtype) || !c->uint(1, &ndim) || !c->uint(2, &reserved))
    return Status::error(Err::truncated, "tensor #%u at byte %llu: entry runs past the tensor table", index,
                         (unsigned long long)start);
  const int nl = (int)t->name.size;
  const char* nm = t->name.data;
  if (verify) {
    QTF_TRY(check_name(t->name, "tensor", index));
    if (dtype > kMaxDType)
      return Status::error(Err::bad_dtype, "tensor '%.*s': unknown dtype %llu", nl, nm, (unsigned long long)dtype);
    if (ndim < 1 || ndim > (uint64_t)kMaxDims)
      return Status::error(Err::bad_shape, "tensor '%.*s': ndim %llu is not in 1..%d", nl, nm,
                           (unsigned long long)ndim, kMaxDims);
    if (reserved != 0)
      return Status::error(Err::bad_value, "tensor '%.*s': reserved field is %llu, not 0", nl, nm,
                           (unsigned long long)reserved);
  }
  t->dtype = (DType)dtype;
  t->ndim = (int)ndim;
  for (int i = 0; i < t->ndim; ++i)
    if (!c->uint(8, &t->dims[i]))
      return Status::error(Err::truncated, "tensor '%.*s': dims run past the tensor table", nl, nm);
  uint64_t scale_bits;
  if (!c->uint(8, &t->offset) || !c->uint(8, &t->size) || !c->uint(4, &scale_bits))
    return Status::error(Err::truncated, "tensor '%.*s': entry runs past the tensor table", nl, nm);
  uint32_t sb = (uint32_t)scale_bits;
  std::memcpy(&t->scale, &sb, 4);
  if (verify) {
    uint64_t elements = 1, bytes, end;
    for (int i = 0; i < t->ndim; ++i) {
      if (t->dims[i] == 0)
        return Status::error(Err::bad_shape, "tensor '%.*s': dimension %d is 0", nl, nm, i);
      if (mul_overflows(elements, t->dims[i], &elements))
        return Status::error(Err::overflow, "tensor '%.*s': element count overflows 64 bits", nl, nm);
    }
    if (!tensor_bytes(t->dtype, elements, elements / t->dims[t->ndim - 1], &bytes))
      return Status::error(Err::overflow, "tensor '%.*s': byte size overflows 64 bits", nl, nm);
    if (bytes != t->size)
      return Status::error(Err::bad_shape, "tensor '%.*s': size %llu bytes does not match shape (%llu bytes of %s%s)",
                           nl, nm, (unsigned long long)t->size, (unsigned long long)bytes, dtype_name(t->dtype),
                           t->dtype == DType::q8   ? ", a scale per row included"
                           : t->dtype == DType::q4 ? ", 18 per block of 32 values along each row"
                           : t->dtype == DType::q3 ? ", 14 per block of 32 values along each row"
                           : t->dtype == DType::q4s ? ", 16 per block of 32 values along each row and 8 per group of 8 blocks"
                           : t->dtype == DType::q3s ? ", 12 per block of 32 values along each row and 8 per group of 8 blocks"
                                                   : "");
    if (t->offset % kAlign != 0)
      return Status::error(Err::misaligned, "tensor '%.*s': offset %llu is not a multiple of %llu", nl, nm,
                           (unsigned long long)t->offset, (unsigned long long)kAlign);
    if (t->offset < data_offset)
      return Status::error(Err::out_of_range, "tensor '%.*s': offset %llu is before the data section (%llu)", nl,
                           nm, (unsigned long long)t->offset, (unsigned long long)data_offset);
    if (add_overflows(t->offset, t->size, &end))
      return Status::error(Err::overflow, "tensor '%.*s': offset + size overflows 64 bits", nl, nm);
    if (end > file_size)
      return Status::error(Err::out_of_range, "tensor '%.*s': bytes %llu..%llu lie past the end of the file (%llu)",
                           nl, nm, (unsigned long long)t->offset, (unsigned long long)end,
                           (unsigned long long)file_size);
    if (t->dtype == DType::i8 && !(std::isfinite(t->scale) && t->scale > 0))
      return Status::error(Err::bad_value, "tensor '%.*s': i8 scale %g must be finite and > 0", nl, nm,
                           (double)t->scale);
    if (t->dtype == DType::q8) {  // its row scales lie in [offset, offset + 4 rows), inside the range above
      const uint64_t rows = elements / t->dims[t->ndim - 1];
      for (uint64_t r = 0; r < rows; ++r) {
        float v;
        std::memcpy(&v, c->base + t->offset + 4 * r, 4);
        if (!(std::isfinite(v) && v > 0))
          return Status::error(Err::bad_value, "tensor '%.*s': q8 scale of row %llu is %g, must be finite and > 0",
                               nl, nm, (unsigned long long)r, (double)v);
      }
    }
    if (t->dtype == DType::q4 || t->dtype == DType::q3) QTF_TRY(check_blocks(*t, c->base + t->offset, elements));
    if (t->dtype == DType::q4s || t->dtype == DType::q3s) QTF_TRY(check_sub_scaled(*t, c->base + t->offset, elements));
  }
  return Status::success();
}

}  // namespace

bool Str::equals(const char* s) const {
  size_t n = std::strlen(s);
  return n == size && std::memcmp(data, s, n) == 0;
}

uint64_t TensorInfo::elements() const {
  uint64_t e = 1;
  for (int i = 0; i < ndim; ++i) e *= dims[i];
  return e;
}

uint64_t TensorInfo::rows() const { return ndim > 0 ? elements() / dims[ndim - 1] : 0; }

uint64_t count_nonfinite(const TensorInfo& t, uint64_t* first) {
  const uint8_t* p = static_cast<const uint8_t*>(t.values);
  const uint64_t n = t.elements();
  uint64_t bad = 0;
  auto f32_bad = [](const void* at) {
    uint32_t b;
    std::memcpy(&b, at, 4);
    return (b & 0x7F800000u) == 0x7F800000u;
  };
  switch (t.dtype) {
    case DType::f32:
      for (uint64_t i = 0; i < n; ++i)
        if (f32_bad(p + 4 * i) && bad++ == 0) *first = i;
      break;
    case DType::f16:
      for (uint64_t i = 0; i < n; ++i)
        if (((p[2 * i] | p[2 * i + 1] << 8) & 0x7C00) == 0x7C00 && bad++ == 0) *first = i;
      break;
    case DType::i8:  // integers: only the scale can be non-finite
      if (!std::isfinite(t.scale) && bad++ == 0) *first = 0;
      break;
    case DType::q8:  // the first value of each row whose scale is non-finite
      for (uint64_t r = 0, rows = t.rows(), cols = rows ? n / rows : 0; r < rows; ++r)
        if (f32_bad(t.row_scales + r) && bad++ == 0) *first = r * cols;
      break;
    case DType::q4:
    case DType::q3: {  // the f16 scale leading each block of a row: the block's first value
      const uint8_t* b = static_cast<const uint8_t*>(t.data);
      const uint64_t rows = t.rows(), cols = rows ? n / rows : 0, blocks = (cols + kQ4Block - 1) / kQ4Block;
      const uint64_t step = t.dtype == DType::q4 ? kQ4BlockBytes : kQ3BlockBytes;
      for (uint64_t r = 0; r < rows; ++r)
        for (uint64_t k = 0; k < blocks; ++k, b += step)
          if (((b[0] | b[1] << 8) & 0x7C00) == 0x7C00 && bad++ == 0) *first = r * cols + k * kQ4Block;
      break;
    }
    case DType::q4s:
    case DType::q3s: {  // each block's scale f16(s_j * D), as for q4 and q3
      const uint8_t* b = static_cast<const uint8_t*>(t.data);
      const bool q3 = t.dtype == DType::q3s;
      const uint64_t rows = t.rows(), cols = rows ? n / rows : 0, nb = (cols + kQ4Block - 1) / kQ4Block;
      for (uint64_t i = 0; i < rows * nb; ++i)
        if ((sgroup_scale(b + sgroup_offset(q3, i / kSGroup), (int)(i % kSGroup)) & 0x7C00) == 0x7C00 && bad++ == 0)
          *first = i / nb * cols + i % nb * kQ4Block;
      break;
    }
  }
  return bad;
}

bool ModelFile::stored_checksum(const void* data, size_t size, uint32_t* crc) {
  if (data == nullptr || size < kHeaderSize) return false;
  *crc = (uint32_t)load_le(static_cast<const uint8_t*>(data) + kChecksumOffset, 4);
  return true;
}

Status ModelFile::open(const void* data, size_t size, Checksum checksum) {
  *this = ModelFile();
  if (data == nullptr) return Status::error(Err::invalid_argument, "model buffer is null");
  const uint8_t* p = static_cast<const uint8_t*>(data);
  if (size < kHeaderSize)
    return Status::error(Err::truncated, "file is %lu bytes, shorter than the %lu-byte header", (unsigned long)size,
                         (unsigned long)kHeaderSize);
  if (std::memcmp(p, kMagic, 8) != 0)
    return Status::error(Err::bad_magic, "not a .qtf model file (magic bytes are not 'QTFMODEL')");
  unsigned version = (unsigned)load_le(p + 8, 4);
  if (version != kVersion)
    return Status::error(Err::bad_version, "format version %u is not supported (this reader reads version %u)",
                         version, (unsigned)kVersion);
  if (load_le(p + 12, 4) != 0 || load_le(p + 76, 4) != 0)
    return Status::error(Err::bad_value, "header: reserved flags are not 0");
  uint64_t file_size = load_le(p + 16, 8);
  if (file_size > size)
    return Status::error(Err::truncated, "file is truncated: header says %llu bytes, only %llu present",
                         (unsigned long long)file_size, (unsigned long long)size);
  if (file_size < size)
    return Status::error(Err::bad_value, "file has %llu trailing bytes after the %llu the header declares",
                         (unsigned long long)(size - file_size), (unsigned long long)file_size);

  unsigned stored_crc = (unsigned)load_le(p + kChecksumOffset, 4);
  static const uint8_t kZero[4] = {0, 0, 0, 0};
  unsigned crc = stored_crc;
  if (checksum == Checksum::verify) {
    crc = crc32_update(0, p, kChecksumOffset);
    crc = crc32_update(crc, kZero, 4);
    crc = crc32_update(crc, p + kChecksumOffset + 4, size - kChecksumOffset - 4);
  }
  if (crc != stored_crc)
    return Status::error(Err::bad_checksum, "checksum mismatch: stored %08x, computed %08x (file damaged)",
                         stored_crc, crc);

  uint64_t meta_off = load_le(p + 24, 8), meta_size = load_le(p + 32, 8);
  uint64_t table_off = load_le(p + 40, 8), table_size = load_le(p + 48, 8);
  uint64_t data_off = load_le(p + 56, 8);
  unsigned meta_count = (unsigned)load_le(p + 64, 4), tensor_count = (unsigned)load_le(p + 68, 4);
  uint64_t meta_end, table_end;
  if (add_overflows(meta_off, meta_size, &meta_end) || add_overflows(table_off, table_size, &table_end))
    return Status::error(Err::overflow, "header: section offset + size overflows 64 bits");
  if (meta_off < kHeaderSize)
    return Status::error(Err::out_of_range, "header: metadata offset %llu overlaps the header",
                         (unsigned long long)meta_off);
  if (table_off < meta_end)
    return Status::error(Err::overlap, "header: tensor table (at %llu) overlaps the metadata section (ends %llu)",
                         (unsigned long long)table_off, (unsigned long long)meta_end);
  if (data_off < table_end)
    return Status::error(Err::overlap, "header: data section (at %llu) overlaps the tensor table (ends %llu)",
                         (unsigned long long)data_off, (unsigned long long)table_end);
  if (data_off > file_size)
    return Status::error(Err::out_of_range, "header: data offset %llu is past the end of the file (%llu)",
                         (unsigned long long)data_off, (unsigned long long)file_size);
  if (data_off % kAlign != 0)
    return Status::error(Err::misaligned, "header: data offset %llu is not a multiple of %llu",
                         (unsigned long long)data_off, (unsigned long long)kAlign);
  if (meta_count > kMaxEntries || tensor_count > kMaxEntries)
    return Status::error(Err::bad_value, "header: %u metadata entries / %u tensors exceed the limit of %u",
                         meta_count, tensor_count, (unsigned)kMaxEntries);

  // Metadata: exactly meta_count entries filling the section; unique keys.
  Cursor mc{p, meta_off, meta_end};
  for (uint32_t i = 0; i < meta_count; ++i) {
    MetaEntry e;
    QTF_TRY(parse_meta(&mc, i, true, &e));
    Cursor prev{p, meta_off, meta_end};
    for (uint32_t j = 0; j < i; ++j) {
      MetaEntry o;
      (void)parse_meta(&prev, j, false, &o);
      if (str_eq(o.key, e.key))
        return Status::error(Err::duplicate_name, "metadata key '%.*s' appears twice", (int)e.key.size, e.key.data);
    }
  }
  if (mc.pos != meta_end)
    return Status::error(Err::bad_value, "metadata section has %llu unused bytes after %u entries",
                         (unsigned long long)(meta_end - mc.pos), meta_count);

  // Tensor table: exactly tensor_count entries filling the table; increasing, non-overlapping ranges.
  Cursor tc{p, table_off, table_end};
  uint64_t prev_end = data_off;
  TensorInfo prev_t;
  for (uint32_t i = 0; i < tensor_count; ++i) {
    TensorInfo t;
    QTF_TRY(parse_tensor(&tc, i, true, data_off, file_size, &t));
    if (i > 0 && t.offset < prev_end)
      return Status::error(Err::overlap, "tensor '%.*s' (bytes %llu..) overlaps '%.*s' (ends %llu)", (int)t.name.size,
                           t.name.data, (unsigned long long)t.offset, (int)prev_t.name.size, prev_t.name.data,
                           (unsigned long long)prev_end);
    Cursor prev{p, table_off, table_end};
    for (uint32_t j = 0; j < i; ++j) {
      TensorInfo o;
      (void)parse_tensor(&prev, j, false, data_off, file_size, &o);
      if (str_eq(o.name, t.name))
        return Status::error(Err::duplicate_name, "tensor name '%.*s' appears twice", (int)t.name.size, t.name.data);
    }
    prev_end = t.offset + t.size;
    prev_t = t;
  }
  if (tc.pos != table_end)
    return Status::error(Err::bad_value, "tensor table has %llu unused bytes after %u entries",
                         (unsigned long long)(table_end - tc.pos), tensor_count);

  base_ = p;
  size_ = file_size;
  version_ = version;
  checksum_ = stored_crc;
  meta_count_ = meta_count;
  tensor_count_ = tensor_count;
  meta_offset_ = meta_off;
  meta_end_ = meta_end;
  table_offset_ = table_off;
  table_end_ = table_end;
  data_offset_ = data_off;
  return Status::success();
}

bool ModelFile::next_meta(uint64_t* cursor, MetaEntry* out) const {
  if (!base_) return false;
  uint64_t pos = *cursor == 0 ? meta_offset_ : *cursor;
  if (pos >= meta_end_) return false;
  Cursor c{base_, pos, meta_end_};
  if (!parse_meta(&c, 0, false, out).ok()) return false;
  *cursor = c.pos;
  return true;
}

bool ModelFile::next_tensor(uint64_t* cursor, TensorInfo* out) const {
  if (!base_) return false;
  uint64_t pos = *cursor == 0 ? table_offset_ : *cursor;
  if (pos >= table_end_) return false;
  Cursor c{base_, pos, table_end_};
  if (!parse_tensor(&c, 0, false, data_offset_, size_, out).ok()) return false;
  out->data = out->values = base_ + out->offset;
  out->row_scales = nullptr;
  if (out->dtype == DType::q8) {
    out->row_scales = reinterpret_cast<const float*>(base_ + out->offset);  // 64-byte aligned offset
    out->values = base_ + out->offset + 4 * out->rows();
  }
  *cursor = c.pos;
  return true;
}

bool ModelFile::find_meta(const char* key, MetaEntry* out) const {
  uint64_t cur = 0;
  while (next_meta(&cur, out))
    if (out->key.equals(key)) return true;
  return false;
}

bool ModelFile::find_tensor(const char* name, TensorInfo* out) const {
  uint64_t cur = 0;
  while (next_tensor(&cur, out))
    if (out->name.equals(name)) return true;
  return false;
}

// ---- typed metadata access ----

bool MetaEntry::as_i64(int64_t* out) const {
  if (type != MetaType::i64) return false;
  *out = (int64_t)load_le(value, 8);
  return true;
}

bool MetaEntry::as_f64(double* out) const {
  if (type == MetaType::i64) {
    *out = (double)(int64_t)load_le(value, 8);
    return true;
  }
  if (type != MetaType::f64) return false;
  uint64_t bits = load_le(value, 8);
  std::memcpy(out, &bits, 8);
  return true;
}

bool MetaEntry::as_str(Str* out) const {
  if (type != MetaType::str) return false;
  out->size = (uint32_t)load_le(value, 4);
  out->data = reinterpret_cast<const char*>(value + 4);
  return true;
}

bool MetaEntry::i64_at(uint32_t i, int64_t* out) const {
  if (type != MetaType::i64_array || i >= count) return false;
  *out = (int64_t)load_le(value + 4 + 8ull * i, 8);
  return true;
}

bool MetaEntry::f64_at(uint32_t i, double* out) const {
  if (type != MetaType::f64_array || i >= count) return false;
  uint64_t bits = load_le(value + 4 + 8ull * i, 8);
  std::memcpy(out, &bits, 8);
  return true;
}

bool MetaEntry::str_at(uint32_t i, Str* out) const {
  if (type != MetaType::str_array || i >= count) return false;
  const uint8_t* q = value + 4;
  for (uint32_t k = 0;; ++k) {
    uint32_t len = (uint32_t)load_le(q, 4);
    if (k == i) {
      out->size = len;
      out->data = reinterpret_cast<const char*>(q + 4);
      return true;
    }
    q += 4 + len;
  }
}

bool MetaEntry::next_str(uint64_t* cursor, Str* out) const {
  // cursor: the element index in its low 25 bits (count <= kMaxArrayCount), the element's byte offset
  // after the count above them.
  static_assert(kMaxArrayCount < (1u << 25), "next_str keeps the index in 25 bits");
  const uint32_t i = (uint32_t)(*cursor & 0x1FFFFFF);
  const uint64_t at = *cursor >> 25;
  if (type != MetaType::str_array || i >= count) return false;
  const uint8_t* q = value + 4 + at;  // inside the verified entry: every element's length was checked
  out->size = (uint32_t)load_le(q, 4);
  out->data = reinterpret_cast<const char*>(q + 4);
  *cursor = ((at + 4 + out->size) << 25) | (uint64_t)(i + 1);
  return true;
}

Status ModelFile::get_i64(const char* key, int64_t* out) const {
  MetaEntry e;
  if (!find_meta(key, &e)) return Status::error(Err::missing, "metadata key '%s' is missing", key);
  if (!e.as_i64(out))
    return Status::error(Err::bad_value, "metadata '%s' is %s, expected i64", key, meta_type_name(e.type));
  return Status::success();
}

Status ModelFile::get_f64(const char* key, double* out) const {
  MetaEntry e;
  if (!find_meta(key, &e)) return Status::error(Err::missing, "metadata key '%s' is missing", key);
  if (!e.as_f64(out))
    return Status::error(Err::bad_value, "metadata '%s' is %s, expected f64", key, meta_type_name(e.type));
  return Status::success();
}

Status ModelFile::get_str(const char* key, Str* out) const {
  MetaEntry e;
  if (!find_meta(key, &e)) return Status::error(Err::missing, "metadata key '%s' is missing", key);
  if (!e.as_str(out))
    return Status::error(Err::bad_value, "metadata '%s' is %s, expected str", key, meta_type_name(e.type));
  return Status::success();
}

Status ModelFile::get_i64_or(const char* key, int64_t* out) const {
  MetaEntry e;
  if (!find_meta(key, &e)) return Status::success();
  return get_i64(key, out);
}

Status ModelFile::get_f64_or(const char* key, double* out) const {
  MetaEntry e;
  if (!find_meta(key, &e)) return Status::success();
  return get_f64(key, out);
}

}  // namespace qtf::format
