// Safetensors files built in a test or a fuzz seed (tests/import, tests/fuzz), and small file helpers.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace qtf::testing {

struct StEntry {
  std::string name, dtype;
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;
};

// A safetensors file holding these tensors back to back; metadata (a JSON object text) if non-empty.
inline std::vector<uint8_t> make_safetensors(const std::vector<StEntry>& es, const std::string& metadata) {
  std::string h = "{";
  if (!metadata.empty()) h += "\"__metadata__\":" + metadata;
  uint64_t off = 0;
  for (const StEntry& e : es) {
    if (h.size() > 1) h += ",";
    h += "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
    for (size_t k = 0; k < e.shape.size(); ++k) h += (k ? "," : "") + std::to_string(e.shape[k]);
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + e.bytes.size()) + "]}";
    off += e.bytes.size();
  }
  h += "}";
  while (h.size() % 8) h += ' ';  // padded as the safetensors library pads
  std::vector<uint8_t> b;
  const uint64_t n = h.size();
  for (int k = 0; k < 8; ++k) b.push_back((uint8_t)(n >> (8 * k)));
  b.resize(8 + h.size() + off);
  std::memcpy(b.data() + 8, h.data(), h.size());
  size_t at = 8 + h.size();
  for (const StEntry& e : es) {
    if (!e.bytes.empty()) std::memcpy(b.data() + at, e.bytes.data(), e.bytes.size());
    at += e.bytes.size();
  }
  return b;
}

inline bool write_file(const std::string& path, const std::vector<uint8_t>& b) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  return std::fclose(f) == 0 && ok;
}

inline bool read_file(const std::string& path, std::vector<uint8_t>* b) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  b->clear();
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) b->insert(b->end(), buf, buf + n);
  std::fclose(f);
  return true;
}

}  // namespace qtf::testing
