#include "import/safetensors.h"

#include <algorithm>
#include <cstring>

#include "format/format.h"
#include "import/json.h"

namespace qtf::import {
namespace {

struct DTypeInfo {
  const char* name;
  uint32_t size;
  StType type;
};
// Every dtype of the safetensors format, so that any well-formed file's sizes can be checked; only
// the first three convert.
constexpr DTypeInfo kDTypes[] = {
    {"F32", 4, StType::f32}, {"F16", 2, StType::f16},     {"BF16", 2, StType::bf16},  {"F64", 8, StType::other},
    {"I64", 8, StType::other}, {"U64", 8, StType::other}, {"I32", 4, StType::other},  {"U32", 4, StType::other},
    {"I16", 2, StType::other}, {"U16", 2, StType::other}, {"I8", 1, StType::other},   {"U8", 1, StType::other},
    {"BOOL", 1, StType::other}, {"F8_E5M2", 1, StType::other}, {"F8_E4M3", 1, StType::other}};

const DTypeInfo* find_dtype(std::string_view s) {
  for (const DTypeInfo& d : kDTypes)
    if (s == d.name) return &d;
  return nullptr;
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > UINT64_MAX / a) return false;
  *out = a * b;
  return true;
}

// A printable, bounded copy of a name for messages.
std::string shown(std::string_view s) { return std::string(s.substr(0, 80)); }

}  // namespace

Status parse_safetensors(const uint8_t* data, size_t size, const char* what, std::vector<StTensor>* out) {
  if (size < 8)
    return Status::error(Err::truncated, "%s: %lu bytes, too short for a safetensors header", what, (unsigned long)size);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = n << 8 | data[k];
  if (n > kMaxSafetensorsHeader)
    return Status::error(Err::out_of_range, "%s: safetensors header length %llu is over the %llu-byte limit", what,
                         (unsigned long long)n, (unsigned long long)kMaxSafetensorsHeader);
  if (n > size - 8)
    return Status::error(Err::truncated, "%s: safetensors header length %llu but only %lu bytes follow (truncated?)",
                         what, (unsigned long long)n, (unsigned long)(size - 8));
  json::Document doc;
  json::Limits lim;
  lim.max_bytes = kMaxSafetensorsHeader;
  lim.max_depth = 8;  // {name: {shape: [..]}} and a flat __metadata__
  std::string label = std::string(what) + " header";
  QTF_TRY(doc.parse(reinterpret_cast<const char*>(data + 8), (size_t)n, label.c_str(), lim));
  json::Value root = doc.root();
  if (!root.is(json::Type::object)) return Status::error(Err::bad_value, "%s: the header is not a JSON object", what);

  const uint8_t* base = data + 8 + n;
  const uint64_t avail = size - 8 - n;
  const size_t first = out->size();
  for (json::Value e = root.first(); e.exists(); e = e.next()) {
    const std::string name = shown(e.key());
    if (e.key() == "__metadata__") {  // free-form string pairs: checked for shape, then ignored
      if (!e.is(json::Type::object)) return Status::error(Err::bad_value, "%s: __metadata__ is not an object", what);
      continue;
    }
    if (e.key().empty()) return Status::error(Err::bad_value, "%s: a tensor has an empty name", what);
    if (!e.is(json::Type::object)) return Status::error(Err::bad_value, "%s: tensor '%s' is not an object", what, name.c_str());
    if (e.size() != 3)
      return Status::error(Err::bad_value, "%s: tensor '%s' needs exactly dtype, shape and data_offsets", what, name.c_str());
    json::Value dt = e.get("dtype"), shape = e.get("shape"), offs = e.get("data_offsets");
    if (!dt.is(json::Type::string) || !shape.is(json::Type::array) || !offs.is(json::Type::array))
      return Status::error(Err::bad_value, "%s: tensor '%s' needs dtype (string), shape (array), data_offsets (array)",
                           what, name.c_str());
    const DTypeInfo* info = find_dtype(dt.str());
    if (info == nullptr)
      return Status::error(Err::bad_dtype, "%s: tensor '%s' has unknown dtype '%s'", what, name.c_str(),
                           shown(dt.str()).c_str());
    StTensor t;
    t.name = std::string(e.key());
    t.dtype = info->name;
    t.type = info->type;
    t.file = what;
    if (shape.size() > kMaxSafetensorsDims)
      return Status::error(Err::bad_shape, "%s: tensor '%s' has %lu dimensions (at most %lu)", what, name.c_str(),
                           (unsigned long)shape.size(), (unsigned long)kMaxSafetensorsDims);
    uint64_t elements = 1;
    for (json::Value d = shape.first(); d.exists(); d = d.next()) {
      int64_t v = -1;
      if (!d.integer(&v) || v < 0)
        return Status::error(Err::bad_shape, "%s: tensor '%s' has a shape entry that is not a non-negative integer",
                             what, name.c_str());
      if (!mul_ok(elements, (uint64_t)v, &elements))
        return Status::error(Err::overflow, "%s: tensor '%s': shape overflows", what, name.c_str());
      t.shape.push_back((uint64_t)v);
    }
    int64_t b = -1, en = -1;
    if (offs.size() != 2 || !offs.first().integer(&b) || !offs.first().next().integer(&en) || b < 0 || en < 0)
      return Status::error(Err::bad_value, "%s: tensor '%s': data_offsets is not [begin, end] of non-negative integers",
                           what, name.c_str());
    uint64_t want = 0;
    if (!mul_ok(elements, info->size, &want))
      return Status::error(Err::overflow, "%s: tensor '%s': size overflows", what, name.c_str());
    if (en < b || (uint64_t)en > avail)
      return Status::error(Err::out_of_range, "%s: tensor '%s': data_offsets [%lld, %lld] outside the %llu data bytes",
                           what, name.c_str(), (long long)b, (long long)en, (unsigned long long)avail);
    if ((uint64_t)(en - b) != want)
      return Status::error(Err::bad_shape, "%s: tensor '%s': %llu bytes but %s x %llu elements need %llu", what,
                           name.c_str(), (unsigned long long)(en - b), info->name, (unsigned long long)elements,
                           (unsigned long long)want);
    t.elements = elements;
    t.data = base + b;
    t.bytes = want;
    out->push_back(std::move(t));
  }
  // No two tensors share bytes (empty ones take none).
  std::vector<const StTensor*> by_offset;
  for (size_t i = first; i < out->size(); ++i)
    if ((*out)[i].bytes) by_offset.push_back(&(*out)[i]);
  std::sort(by_offset.begin(), by_offset.end(), [](const StTensor* a, const StTensor* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->data < by_offset[i - 1]->data + by_offset[i - 1]->bytes)
      return Status::error(Err::overlap, "%s: tensors '%s' and '%s' overlap", what, shown(by_offset[i - 1]->name).c_str(),
                           shown(by_offset[i]->name).c_str());
  return Status::success();
}

Status st_to_f32(const StTensor& t, float* out) {
  const uint8_t* p = t.data;
  switch (t.type) {
    case StType::f32:
      std::memcpy(out, p, t.elements * 4);
      return Status::success();
    case StType::f16:
      for (uint64_t i = 0; i < t.elements; ++i) out[i] = format::f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
      return Status::success();
    case StType::bf16:
      for (uint64_t i = 0; i < t.elements; ++i) {
        uint32_t u = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
        std::memcpy(&out[i], &u, 4);
      }
      return Status::success();
    case StType::other: break;
  }
  return Status::error(Err::bad_dtype, "%s: tensor '%s' has dtype %s; the importer reads F32, F16 and BF16",
                       t.file.c_str(), shown(t.name).c_str(), t.dtype.c_str());
}

// ---------------------------------------------------------------------------------------------------

Status SafetensorsSet::add_file(const std::string& path, const std::string& label, std::vector<StTensor>* out) {
  auto f = std::make_unique<host::FileBytes>();
  QTF_TRY(f->open(path.c_str(), true));
  QTF_TRY(parse_safetensors(f->data(), f->size(), label.c_str(), out));
  files_.push_back(std::move(f));
  return Status::success();
}

Status SafetensorsSet::index() {
  std::sort(tensors_.begin(), tensors_.end(), [](const StTensor& a, const StTensor& b) { return a.name < b.name; });
  for (size_t i = 1; i < tensors_.size(); ++i)
    if (tensors_[i].name == tensors_[i - 1].name)
      return Status::error(Err::duplicate_name, "tensor '%s' is in both %s and %s", shown(tensors_[i].name).c_str(),
                           tensors_[i - 1].file.c_str(), tensors_[i].file.c_str());
  return Status::success();
}

Status SafetensorsSet::open_file(const std::string& path) {
  files_.clear();
  tensors_.clear();
  size_t slash = path.find_last_of('/');
  QTF_TRY(add_file(path, slash == std::string::npos ? path : path.substr(slash + 1), &tensors_));
  return index();
}

const StTensor* SafetensorsSet::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const StTensor& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

Status SafetensorsSet::open_dir(const std::string& dir) {
  files_.clear();
  tensors_.clear();
  const std::string index_name = "model.safetensors.index.json";
  host::FileBytes idx;
  if (!idx.open((dir + "/" + index_name).c_str(), true).ok()) {
    Status s = add_file(dir + "/model.safetensors", "model.safetensors", &tensors_);
    if (!s.ok() && s.code() == Err::io)
      return Status::error(Err::missing, "neither model.safetensors nor %s is readable", index_name.c_str());
    QTF_TRY(s);
    return index();
  }
  json::Document doc;
  QTF_TRY(doc.parse(reinterpret_cast<const char*>(idx.data()), idx.size(), index_name.c_str()));
  json::Value map = doc.root().get("weight_map");
  if (!map.is(json::Type::object))
    return Status::error(Err::bad_value, "%s: weight_map (an object of tensor -> file) is missing", index_name.c_str());
  // The shards, each opened once, in order of first mention.
  std::vector<std::string> shards;
  for (json::Value e = map.first(); e.exists(); e = e.next()) {
    std::string_view f = e.str();
    if (!e.is(json::Type::string) || f.empty() || f.find('/') != f.npos || f.find('\\') != f.npos || f == "." || f == "..")
      return Status::error(Err::bad_value, "%s: weight_map['%s'] is not a file name in the model directory",
                           index_name.c_str(), shown(e.key()).c_str());
    if (std::find(shards.begin(), shards.end(), f) == shards.end()) {
      if (shards.size() >= kMaxShards)
        return Status::error(Err::out_of_range, "%s: more than %lu shards", index_name.c_str(), (unsigned long)kMaxShards);
      shards.emplace_back(f);
    }
  }
  std::vector<StTensor> all;
  for (const std::string& s : shards) QTF_TRY(add_file(dir + "/" + s, s, &all));
  // Keep each listed tensor from the shard the map names; the map must name only tensors that exist.
  std::sort(all.begin(), all.end(), [](const StTensor& a, const StTensor& b) {
    return a.name != b.name ? a.name < b.name : a.file < b.file;
  });
  for (json::Value e = map.first(); e.exists(); e = e.next()) {
    auto it = std::lower_bound(all.begin(), all.end(), e.key(), [](const StTensor& t, std::string_view n) { return t.name < n; });
    for (; it != all.end() && it->name == e.key(); ++it)
      if (it->file == e.str()) break;
    if (it == all.end() || it->name != e.key())
      return Status::error(Err::missing, "%s: tensor '%s' is not in %s", index_name.c_str(), shown(e.key()).c_str(),
                           std::string(e.str()).c_str());
    tensors_.push_back(*it);
  }
  return index();
}

}  // namespace qtf::import
