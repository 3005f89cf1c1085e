// Rewrites a .qtf file through format::Writer with edits, to build damaged or unusual models for tests
// and the fuzz seed corpus: metadata overrides, tensor value changes, and f16/i8/q8/q4/q3/q4s/q3s storage.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "format/reader.h"
#include "host/quantize.h"
#include "host/writer.h"
#include "kernels/kernels.h"

namespace qtf::testing {

struct ModelEdit {
  // Called for each metadata key; return true when it wrote (or meant to drop) the entry itself.
  std::function<bool(const std::string& key, format::Writer* w)> meta;
  // Called for each tensor's values (as f32) before they are stored.
  std::function<void(const std::string& name, std::vector<float>* values)> tensor;
  format::DType dtype = format::DType::f32;  // how tensors are stored (q8: a scale per row; q4, q3, q4s, q3s: blocks)
};

inline std::vector<uint8_t> rewrite_model(const std::vector<uint8_t>& in, const ModelEdit& edit) {
  format::ModelFile f;
  if (!f.open(in.data(), in.size()).ok()) return {};
  format::Writer w;
  uint64_t cur = 0;
  format::MetaEntry e;
  while (f.next_meta(&cur, &e)) {
    const std::string key(e.key.data, e.key.size);
    if (edit.meta && edit.meta(key, &w)) continue;
    w.add_meta(e);
  }
  cur = 0;
  format::TensorInfo t;
  while (f.next_tensor(&cur, &t)) {
    const std::string name(t.name.data, t.name.size);
    std::vector<float> v(t.elements());
    const uint8_t* src = static_cast<const uint8_t*>(t.values);
    const size_t cols = (size_t)t.dims[t.ndim - 1];
    for (size_t k = 0; k < v.size(); ++k) {
      if (t.dtype == format::DType::f32) std::memcpy(&v[k], src + 4 * k, 4);
      else if (t.dtype == format::DType::f16) v[k] = format::f16_to_f32((uint16_t)(src[2 * k] | src[2 * k + 1] << 8));
      else if (t.dtype == format::DType::i8) v[k] = t.scale * (float)(int8_t)src[k];
      else if (t.dtype == format::DType::q4) v[k] = Weights::q4(src, (int64_t)cols).value((int64_t)k, (int64_t)(k / cols));
      else if (t.dtype == format::DType::q3) v[k] = q3_value(src + k / cols * q3_row_bytes((int64_t)cols), (int64_t)(k % cols));
      else if (t.dtype == format::DType::q4s || t.dtype == format::DType::q3s) {
        uint8_t q4[kQ4BlockBytes];  // the value's block as q4
        const uint64_t nb = (cols + kQ4Block - 1) / kQ4Block, c = k % cols;
        sblocks_to_q4(src, t.dtype == format::DType::q3s, k / cols * nb + c / kQ4Block, 1, q4);
        v[k] = q4_value(q4, (int64_t)(c % kQ4Block));
      }
      else v[k] = t.row_scales[k / cols] * (float)(int8_t)src[k];
    }
    if (edit.tensor) edit.tensor(name, &v);
    std::vector<uint64_t> dims(t.dims, t.dims + t.ndim);
    if (edit.dtype == format::DType::f16) {
      std::vector<uint16_t> h(v.size());
      for (size_t k = 0; k < v.size(); ++k) h[k] = f32_to_f16(v[k]);
      w.add_tensor(name, format::DType::f16, dims, h.data());
    } else if (edit.dtype == format::DType::i8) {
      float amax = 0;
      for (float x : v) amax = std::fabs(x) > amax ? std::fabs(x) : amax;
      const float scale = amax > 0 ? amax / 127.f : 1.f;
      std::vector<int8_t> q(v.size());
      for (size_t k = 0; k < v.size(); ++k) q[k] = (int8_t)std::lround(v[k] / scale);
      w.add_tensor(name, format::DType::i8, dims, q.data(), scale);
    } else if (edit.dtype == format::DType::q8) {
      const size_t n = (size_t)dims.back(), rows = v.size() / n;
      std::vector<float> scales(rows);
      std::vector<int8_t> q(v.size());
      for (size_t r = 0; r < rows; ++r) {
        float amax = 0;
        for (size_t c = 0; c < n; ++c) amax = std::fabs(v[r * n + c]) > amax ? std::fabs(v[r * n + c]) : amax;
        scales[r] = amax > 0 ? amax / 127.f : 1.f;
        for (size_t c = 0; c < n; ++c) q[r * n + c] = (int8_t)std::lround(v[r * n + c] / scales[r]);
      }
      w.add_q8(name, dims, scales.data(), q.data());
    } else if (edit.dtype == format::DType::q4) {
      const int64_t n = (int64_t)dims.back(), rows = (int64_t)v.size() / n;
      std::vector<uint8_t> blocks((size_t)(rows * q4_row_bytes(n)));
      for (int64_t r = 0; r < rows; ++r)
        host::quantize_q4_row(v.data() + r * n, n, host::Q4Scale::absmax, blocks.data() + r * q4_row_bytes(n));
      w.add_tensor(name, format::DType::q4, dims, blocks.data());
    } else if (edit.dtype == format::DType::q3) {
      const int64_t n = (int64_t)dims.back(), rows = (int64_t)v.size() / n;
      std::vector<uint8_t> blocks((size_t)(rows * q3_row_bytes(n)));
      for (int64_t r = 0; r < rows; ++r)
        host::quantize_q3_row(v.data() + r * n, n, host::Q4Scale::search, blocks.data() + r * q3_row_bytes(n));
      w.add_tensor(name, format::DType::q3, dims, blocks.data());
    } else if (edit.dtype == format::DType::q4s || edit.dtype == format::DType::q3s) {
      const int64_t n = (int64_t)dims.back(), rows = (int64_t)v.size() / n;
      uint64_t bytes = 0;
      format::tensor_bytes(edit.dtype, v.size(), (uint64_t)rows, &bytes);
      std::vector<uint8_t> blocks((size_t)bytes);
      int64_t bad_row = 0;
      host::quantize_sub_scaled(v.data(), rows, n, edit.dtype == format::DType::q3s, host::Q4Scale::search,
                                blocks.data(), &bad_row);
      w.add_tensor(name, edit.dtype, dims, blocks.data());
    } else {
      w.add_f32(name, dims, v.data());
    }
  }
  return w.finish();
}

}  // namespace qtf::testing
