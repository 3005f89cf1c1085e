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

}  // namespace

float quantize_i8(const float* v, size_t n, int8_t* q) {
  float amax = 0.f;
  for (size_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(v[i]));
  const float s = amax > 0.f ? amax / 127.f : 1.f;
  for (size_t i = 0; i < n; ++i) {
    const long r = std::lround(v[i] / s);
    q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
  }
  return s;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xFF, man = x & 0x7FFFFFu;
  if (exp == 0xFF) return (uint16_t)(sign | 0x7C00u | (man ? 0x200u : 0));
  const int e = (int)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7C00u);
  if (e <= 0) {  // subnormal half or zero
    if (e < -10) return (uint16_t)sign;
    const uint32_t m = man | 0x800000u;
    const int shift = 14 - e;
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (man >> 13);
  const uint32_t rem = man & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;  // a carry into the exponent is still right
  return (uint16_t)(sign | h);
}

Status quantize_model(const void* data, size_t size, QuantType type, std::vector<uint8_t>* out,
                      QuantizeReport* report) {
  const bool q8 = type == QuantType::q8;
  // LoadedModel would copy a buffer that is not 64-byte aligned, and its pointers would not be into `data`.
  if (reinterpret_cast<uintptr_t>(data) % 64 != 0)
    return Status::error(Err::invalid_argument, "quantize_model: the input buffer must be 64-byte aligned");
  format::ModelFile f;
  LoadedModel lm;
  QTF_TRY(f.open(data, size));
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
    } else if (!q8) {
      std::vector<uint16_t> h(n);
      for (size_t i = 0; i < n; ++i) h[i] = f32_to_f16(v[i]);
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
