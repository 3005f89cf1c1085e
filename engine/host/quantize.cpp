// Quantization (quantize.h). Which tensors are matrices is the engine's own answer: the model is bound
// in place over the input bytes, and a tensor is a matrix when its values are where a Weights points.
#include "host/quantize.h"

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "format/reader.h"
#include "host/session.h"
#include "host/writer.h"

namespace qtf::host {
namespace {

void copy_metadata(const format::ModelFile& f, format::Writer* w) {
  uint64_t cur = 0;
  format::MetaEntry e;
  while (f.next_meta(&cur, &e)) w->add_meta(e);
}

// A TT linear's cores, rescaled along each bond so that the two cores either side of bond index a have
// the same largest value in that slice (core k's [:, :, :, a] and core k+1's [a, :, :, :]): a diagonal
// change of basis D, D^-1 on the bond, so W (and its truncation at any rank) is unchanged. The stored
// cores keep their leading bond components much larger than the trailing ones (the rank schedule
// orders them by importance); balanced, one int8 scale per core fits every slice better.
void balance_bonds(const TTShape& s, std::vector<float>* cores) {
  for (int sweep = 0; sweep < 4; ++sweep)
    for (int k = 0; k + 1 < s.K; ++k) {
      std::vector<float>& left = cores[k];  // [r_k, m, n, r_{k+1}]: bond index innermost
      std::vector<float>& right = cores[k + 1];  // [r_{k+1}, m, n, r_{k+2}]: bond index outermost
      const size_t r = (size_t)s.r[k + 1], right_slice = right.size() / r;
      for (size_t a = 0; a < r; ++a) {
        float lmax = 0.f, rmax = 0.f;
        for (size_t i = a; i < left.size(); i += r) lmax = std::fmax(lmax, std::fabs(left[i]));
        for (size_t i = 0; i < right_slice; ++i) rmax = std::fmax(rmax, std::fabs(right[a * right_slice + i]));
        if (!(lmax > 0.f && rmax > 0.f)) continue;
        const float d = std::sqrt(rmax / lmax);
        for (size_t i = a; i < left.size(); i += r) left[i] *= d;
        for (size_t i = 0; i < right_slice; ++i) right[a * right_slice + i] /= d;
      }
    }
}

// The stored block scale nearest to d (an f16), as the kernels read it; false when d overflows an f16.
bool stored_scale(float d, uint16_t* half, float* stored) {
  *half = f32_to_f16(d);
  *stored = f16_to_f32(*half);
  return std::isfinite(*stored);
}

// A block type's integer range: value = d * (code - zero), code - zero in [lo, hi] (q4: -8..7, q3: -4..3).
struct BlockRange {
  int lo, hi;
};

// The codes of n <= 32 values at the stored scale d (round half away from zero, clamped to the range,
// stored as q - lo; padding -lo, the zero), and their squared error.
double block_codes(const float* v, int n, float d, BlockRange r, uint8_t* code) {
  const float inv = d != 0.f ? 1.f / d : 0.f;
  double err = 0;
  for (int j = 0; j < kQ4Block; ++j) {
    if (j >= n) {
      code[j] = (uint8_t)-r.lo;
      continue;
    }
    // std::lround's rounding (half away from zero), inline, then clamped: the same codes in a fraction of
    // the time (this runs ~23 times a block in the scale search). |x| < 2^30: truncated by the cast and
    // x - t is exact; beyond, a finite x clamps by its sign, and +-Inf and NaN to lo, where lround's
    // LONG_MIN clamped; no float is cast out of range.
    const float x = v[j] * inv;
    long c;
    if (std::fabs(x) < 1073741824.f) {
      const long t = (long)x;
      const float f = x - (float)t;
      const long q = t + (f >= 0.5f) - (f <= -0.5f);
      c = q < r.lo ? r.lo : q > r.hi ? r.hi : q;
    } else {
      c = x > 0.f && std::isfinite(x) ? r.hi : r.lo;
    }
    code[j] = (uint8_t)(c - r.lo);
    const double e = (double)v[j] - (double)d * (double)c;
    err += e * e;
  }
  return err;
}

// One block of n <= 32 values: its f16 scale and codes. absmax: Q4_0's rule, d = max / lo (max: the value
// of largest magnitude, so it maps to the lowest code exactly). search: from each trial scale max / s (s
// around lo and hi, the two ends of the range), the least-squares scale of its codes, rounded to f16; the
// one of least squared error wins (absmax's among them). q4's trials: -8.5 .. -7 and 6.75 .. 7.5.
bool block_search(const float* v, int n, Q4Scale how, BlockRange r, uint16_t* best_half, uint8_t* code) {
  float max = 0.f;
  for (int j = 0; j < n; ++j)
    if (std::fabs(v[j]) > std::fabs(max)) max = v[j];
  float best_d;
  if (!stored_scale(max / (float)r.lo, best_half, &best_d)) return false;
  uint8_t trial[kQ4Block];
  double best = block_codes(v, n, best_d, r, code);
  static const float kLo[] = {-0.5f, -0.25f, 0.25f, 0.5f, 0.75f, 1.f}, kHi[] = {-0.25f, 0.f, 0.25f, 0.5f};
  constexpr int kTrials = 10;
  for (int t = 0; how == Q4Scale::search && max != 0.f && t < kTrials + 1; ++t) {
    // t < kTrials: a trial scale's codes; the last round refits the best codes found so far.
    uint16_t h;
    float d;
    if (t < kTrials) {
      if (!stored_scale(max / (t < 6 ? (float)r.lo + kLo[t] : (float)r.hi + kHi[t - 6]), &h, &d)) continue;
      block_codes(v, n, d, r, trial);
    } else {
      std::memcpy(trial, code, sizeof trial);
    }
    double xq = 0, qq = 0;  // least squares: d = sum(v q) / sum(q q) for these codes
    for (int j = 0; j < n; ++j) {
      const double q = (double)trial[j] + r.lo;
      xq += (double)v[j] * q, qq += q * q;
    }
    if (!(qq > 0) || !stored_scale((float)(xq / qq), &h, &d)) continue;
    const double err = block_codes(v, n, d, r, trial);  // re-rounded at the refitted scale
    if (err < best) best = err, best_d = d, *best_half = h, std::memcpy(code, trial, sizeof trial);
  }
  return true;
}

// A block's codes as stored after its scale: q4, 16 bytes, byte j = code j | code j + 16 << 4; q3, 12
// bytes (kernels.h: 8 bytes of low bit pairs, 4 of high bits). q4s and q3s store the same bytes.
void pack_codes(const uint8_t* code, bool q3, uint8_t* out) {
  if (!q3) {
    for (int j = 0; j < 16; ++j) out[j] = (uint8_t)(code[j] | code[j + 16] << 4);
    return;
  }
  std::memset(out, 0, kQ3BlockBytes - 2);
  for (int j = 0; j < kQ3Block; ++j) {
    out[j & 7] |= (uint8_t)((code[j] & 3) << (2 * (j >> 3)));
    out[8 + (j >> 3)] |= (uint8_t)((code[j] >> 2) << (j & 7));
  }
}

constexpr BlockRange kQ4Range = {-8, 7}, kQ3Range = {-4, 3};

// One q4 (q3) block into 18 (14) bytes: the scale, then the codes.
bool scaled_block(const float* v, int n, Q4Scale how, bool q3, uint8_t* out) {
  uint16_t h;
  uint8_t code[kQ4Block];
  if (!block_search(v, n, how, q3 ? kQ3Range : kQ4Range, &h, code)) return false;
  out[0] = (uint8_t)(h & 0xFF);
  out[1] = (uint8_t)(h >> 8);
  pack_codes(code, q3, out + 2);
  return true;
}

// Every tensor's values finite, checked before anything is converted: a NaN would vanish into q8
// (fmax skips it and its row's scale stays finite) and an Inf would make a whole row's scale infinite.
Status check_finite(const format::ModelFile& f) {
  uint64_t cur = 0, first = 0;
  format::TensorInfo t;
  while (f.next_tensor(&cur, &t))
    if (const uint64_t bad = format::count_nonfinite(t, &first))
      return Status::error(Err::bad_value, "tensor '%.*s' has %llu non-finite values (NaN/Inf), the first at index "
                           "%llu; a model must be finite to be quantized", (int)t.name.size, t.name.data,
                           (unsigned long long)bad, (unsigned long long)first);
  return Status::success();
}

}  // namespace

bool quantize_q4_row(const float* v, int64_t cols, Q4Scale how, uint8_t* out) {
  for (int64_t c0 = 0; c0 < cols; c0 += kQ4Block, out += kQ4BlockBytes)
    if (!scaled_block(v + c0, cols - c0 < kQ4Block ? (int)(cols - c0) : kQ4Block, how, false, out)) return false;
  return true;
}

bool quantize_q3_row(const float* v, int64_t cols, Q4Scale how, uint8_t* out) {
  for (int64_t c0 = 0; c0 < cols; c0 += kQ3Block, out += kQ3BlockBytes)
    if (!scaled_block(v + c0, cols - c0 < kQ3Block ? (int)(cols - c0) : kQ3Block, how, true, out)) return false;
  return true;
}

bool quantize_sub_scaled(const float* v, int64_t rows, int64_t cols, bool q3, Q4Scale how, uint8_t* out,
                         int64_t* bad_row) {
  const int64_t nb = (cols + kQ4Block - 1) / kQ4Block, blocks = rows * nb;
  const int64_t row_bytes = q3 ? q3_row_bytes(cols) : q4_row_bytes(cols), step = q3 ? kQ3BlockBytes : kQ4BlockBytes;
  std::vector<uint8_t> scaled((size_t)(rows * row_bytes));  // 1. each row as q4 / q3: its blocks' f16 scales
  for (int64_t r = 0; r < rows; ++r)
    if (!(q3 ? quantize_q3_row : quantize_q4_row)(v + r * cols, cols, how, scaled.data() + r * row_bytes))
      return *bad_row = r, false;
  for (int64_t g0 = 0; g0 < blocks; g0 += kSGroup) {  // 2. each group of 8: D and the sub-scales
    const int n = blocks - g0 < kSGroup ? (int)(blocks - g0) : kSGroup;
    float d[kSGroup], m = 0.f;
    for (int j = 0; j < n; ++j) {
      const uint8_t* b = scaled.data() + (g0 + j) * step;
      d[j] = f16_to_f32((uint16_t)(b[0] | b[1] << 8));
      m = std::fmax(m, std::fabs(d[j]));
    }
    uint8_t* group = out + sgroup_offset(q3, (uint64_t)g0 / kSGroup);
    const uint16_t dh = f32_to_f16(m / 31.0f);
    const float D = f16_to_f32(dh);
    uint64_t bits = 0;
    for (int j = 0; j < n; ++j) {
      const long q = D == 0.f ? 0 : std::lround(d[j] / D);
      bits |= (uint64_t)((q < -31 ? -31 : q > 31 ? 31 : q) & 63) << (6 * j);
    }
    group[0] = (uint8_t)(dh & 0xFF), group[1] = (uint8_t)(dh >> 8);
    for (int k = 0; k < 6; ++k) group[2 + k] = (uint8_t)(bits >> (8 * k));
    for (int j = 0; j < n; ++j) {  // 3., 4. each block's codes again at its coded scale
      const int64_t r = (g0 + j) / nb, c0 = (g0 + j) % nb * kQ4Block;
      const float dj = f16_to_f32(sgroup_scale(group, j));
      if (!std::isfinite(dj)) return *bad_row = r, false;
      uint8_t code[kQ4Block];
      block_codes(v + r * cols + c0, cols - c0 < kQ4Block ? (int)(cols - c0) : kQ4Block, dj, q3 ? kQ3Range : kQ4Range, code);
      pack_codes(code, q3, group + kSGroupHeader + j * sblock_bytes(q3));
    }
  }
  return true;
}

Status quantize_model(const void* data, size_t size, QuantType type, std::vector<uint8_t>* out,
                      QuantizeReport* report, Q4Scale q4_scale) {
  // q4's, q3's, q4s's and q3s's TT cores are q8's (docs/quantize.md)
  const bool blocked = type == QuantType::q4 || type == QuantType::q3 || type == QuantType::q4s || type == QuantType::q3s;
  const bool q8 = type == QuantType::q8 || blocked;
  // LoadedModel would copy a buffer that is not 64-byte aligned, and its pointers would not be into `data`.
  if (reinterpret_cast<uintptr_t>(data) % 64 != 0)
    return Status::error(Err::invalid_argument, "quantize_model: the input buffer must be 64-byte aligned");
  format::ModelFile f;
  LoadedModel lm;
  QTF_TRY(f.open(data, size));
  QTF_TRY(check_finite(f));
  QTF_TRY(lm.load_memory(data, size));
  // The matrices, by where their values lie in the file: dense ones (and embeddings) and TT cores. Each
  // must be f32 read in place (not stored otherwise, nor converted at load): checked here, before any
  // is read as floats.
  const Model& m = lm.model();
  const uint8_t* begin = static_cast<const uint8_t*>(data);
  std::set<const void*> dense, cores;
  auto add = [&](const Weights& w, std::set<const void*>* to) {
    const uint8_t* at = static_cast<const uint8_t*>(w.data);
    if (w.type != WType::f32 || at < begin || at >= begin + size)
      return Status::error(Err::unsupported, "the model's matrices are not all f32 (quantize takes an f32 model)");
    to->insert(w.data);
    return Status::success();
  };
  for (const Weights* w : {&m.tok_emb, &m.pos_emb, &m.head_w})
    if (w->data) QTF_TRY(add(*w, &dense));
  // The head (the token embeddings when tied: head_w is tok_emb then) makes every logit: q4 keeps it
  // q8, as llama.cpp's Q4_0 keeps it at 6 bits (Q6_K); docs/quantize.md has the loss that buys.
  const void* head = m.head_w.data;
  for (int l = 0; l < m.cfg.n_layers; ++l) {
    const Layer& L = m.layers[l];
    for (const Linear* lin : {&L.q, &L.k, &L.v, &L.o, &L.up, &L.down, &L.gate}) {
      if (!lin->tt && lin->dense.w.data) QTF_TRY(add(lin->dense.w, &dense));
      for (int k = 0; lin->tt && k < lin->tt_w.shape.K; ++k) QTF_TRY(add(lin->tt_w.cores[k], &cores));
    }
  }
  // q8: each TT linear's cores balanced along their bonds first, by where their values lie.
  std::map<const void*, std::vector<float>> balanced;
  for (int l = 0; q8 && l < m.cfg.n_layers; ++l) {
    const Layer& L = m.layers[l];
    for (const Linear* lin : {&L.q, &L.k, &L.v, &L.o, &L.up, &L.down, &L.gate}) {
      if (!lin->tt || lin->tt_w.shape.K == 0) continue;
      const TTShape& sh = lin->tt_w.shape;
      std::vector<float> c[kMaxTTFactors];
      for (int k = 0; k < sh.K; ++k) {
        const float* v = static_cast<const float*>(lin->tt_w.cores[k].data);
        c[k].assign(v, v + (size_t)sh.r[k] * sh.m[k] * sh.n[k] * sh.r[k + 1]);
      }
      balance_bonds(sh, c);
      for (int k = 0; k < sh.K; ++k) balanced[lin->tt_w.cores[k].data] = c[k];
    }
  }
  format::Writer w;
  copy_metadata(f, &w);
  *report = QuantizeReport();
  uint64_t cur = 0;
  format::TensorInfo t;
  while (f.next_tensor(&cur, &t)) {
    const std::string name(t.name.data, t.name.size);
    const std::vector<uint64_t> dims(t.dims, t.dims + t.ndim);
    const bool is_dense = dense.count(t.values) > 0, is_core = cores.count(t.values) > 0;
    const float* v = static_cast<const float*>(t.values);
    const size_t n = (size_t)t.elements();
    if (!is_dense && !is_core) {  // copied as it is
      w.add_tensor(name, t.dtype, dims, t.data, t.scale);
      continue;
    }
    if (blocked && is_dense && t.values != head) {
      const bool q3 = type == QuantType::q3 || type == QuantType::q3s, sub = type == QuantType::q4s || type == QuantType::q3s;
      const format::DType dt = sub ? (q3 ? format::DType::q3s : format::DType::q4s) : q3 ? format::DType::q3 : format::DType::q4;
      const size_t rows = (size_t)t.rows(), cols = n / rows;
      const int64_t row_bytes = q3 ? q3_row_bytes((int64_t)cols) : q4_row_bytes((int64_t)cols);
      uint64_t bytes = 0;
      format::tensor_bytes(dt, n, rows, &bytes);  // no overflow: smaller than the f32 tensor read
      std::vector<uint8_t> blocks((size_t)bytes);
      int64_t bad = -1;
      for (size_t r = 0; !sub && bad < 0 && r < rows; ++r)
        if (!(q3 ? quantize_q3_row : quantize_q4_row)(v + r * cols, (int64_t)cols, q4_scale, blocks.data() + r * row_bytes))
          bad = (int64_t)r;
      if (sub) quantize_sub_scaled(v, (int64_t)rows, (int64_t)cols, q3, q4_scale, blocks.data(), &bad);
      if (bad >= 0)
        return Status::error(Err::bad_value, "tensor '%s': row %lld has values too large for %s's f16 scales (|v| > %g)",
                             name.c_str(), (long long)bad, format::dtype_name(dt), (q3 ? 4.0 : 8.0) * 65504.0);
      w.add_tensor(name, dt, dims, blocks.data());
    } else if (!q8) {
      std::vector<uint16_t> h(n);
      for (size_t i = 0; i < n; ++i) {
        h[i] = f32_to_f16(v[i]);
        if ((h[i] & 0x7C00u) == 0x7C00u)  // the inputs are finite: this one rounds beyond f16's range
          return Status::error(Err::bad_value, "tensor '%s': value %g at index %zu overflows f16 (largest %g); "
                               "keep the model f32 or use --type q8", name.c_str(), (double)v[i], i, 65504.0);
      }
      w.add_tensor(name, format::DType::f16, dims, h.data());
    } else if (is_core) {  // one scale per core (kernels.h: TTMatrix says why), after balance_bonds
      std::vector<int8_t> q(n);
      const float s = quantize_i8(balanced.at(t.values).data(), n, q.data());
      w.add_tensor(name, format::DType::i8, dims, q.data(), s);
    } else {  // one scale per row
      const size_t rows = (size_t)t.rows(), cols = n / rows;
      std::vector<int8_t> q(n);
      std::vector<float> scales(rows);
      for (size_t r = 0; r < rows; ++r) scales[r] = quantize_i8(v + r * cols, cols, q.data() + r * cols);
      w.add_q8(name, dims, scales.data(), q.data());
    }
    report->dense += is_dense, report->cores += is_core;
  }
  *out = w.finish();
  return Status::success();
}

}  // namespace qtf::host
