// Reader of Hugging Face safetensors files (a u64 little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the data) and of sharded directories
// (model.safetensors.index.json's weight_map). Everything is checked before use: the header length
// (<= 100 MB and within the file), the JSON (json.h's limits), each dtype, shape and range (overflow-
// safe, inside the data, size == elements * dtype size, no two ranges overlapping). Tensor bytes are
// used where they lie (the files are memory-mapped); only F32, F16 and BF16 convert to float.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "host/file.h"

namespace qtf::import {

constexpr uint64_t kMaxSafetensorsHeader = 100u << 20;
constexpr size_t kMaxSafetensorsDims = 8;
constexpr size_t kMaxShards = 1024;

enum class StType : uint8_t { f32, f16, bf16, other };

struct StTensor {
  std::string name;
  std::string dtype;  // as the file spells it ("F32", "BF16", "I64", ...)
  StType type = StType::other;
  std::vector<uint64_t> shape;
  uint64_t elements = 0;
  const uint8_t* data = nullptr;  // inside the file's bytes (any alignment)
  uint64_t bytes = 0;
  std::string file;  // the file it is in (for messages)
};

// Parses one safetensors file held in memory and appends its tensors to *out (their data points into
// data[0..size), which must outlive them). `what` names the file in messages.
Status parse_safetensors(const uint8_t* data, size_t size, const char* what, std::vector<StTensor>* out);

// The values of an F32, F16 or BF16 tensor as float (exact); other dtypes are refused by name.
Status st_to_f32(const StTensor& t, float* out);

// The tensors of a Hugging Face model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json (shard names are plain file names inside the directory).
class SafetensorsSet {
 public:
  Status open_dir(const std::string& dir);
  // A single file (tests, tools).
  Status open_file(const std::string& path);
  const StTensor* find(std::string_view name) const;
  const std::vector<StTensor>& tensors() const { return tensors_; }
  // Every file is memory-mapped (its pages may be dropped once read: import/common.h drop_pages).
  bool mapped() const {
    for (const auto& f : files_)
      if (!f->mapped()) return false;
    return !files_.empty();
  }

 private:
  Status add_file(const std::string& path, const std::string& label, std::vector<StTensor>* out);
  Status index();
  std::vector<std::unique_ptr<host::FileBytes>> files_;
  std::vector<StTensor> tensors_;  // sorted by name
};

}  // namespace qtf::import
