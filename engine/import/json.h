// A small, bounded JSON reader for the importers (config.json, tokenizer.json, safetensors headers).
// Strict RFC 8259: UTF-8 checked (no overlongs, surrogates or values above U+10FFFF), escapes including
// surrogate pairs, no trailing commas, no comments, nothing after the value, no duplicate keys in an
// object. Bounded: input bytes, nesting depth (an explicit stack, no recursion), node count and string
// length all have limits, so hostile input costs at most O(input) memory and time O(n log n).
// Errors are one line: "<what>: <problem> at byte <offset>".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace qtf::json {

enum class Type : uint8_t { null, boolean, number, string, array, object };
const char* type_name(Type t);

struct Limits {
  size_t max_bytes = size_t(256) << 20;  // the whole text
  uint32_t max_depth = 64;               // nested arrays/objects
  size_t max_nodes = size_t(8) << 20;    // values in the document (~40 bytes each)
  size_t max_string = size_t(16) << 20;  // one decoded string or key
};

class Document;

// A view of one value in a Document, valid while the Document lives. A lookup that finds nothing
// returns a Value with exists() false; it answers every question with an empty or zero value.
class Value {
 public:
  Value() = default;
  bool exists() const { return doc_ != nullptr; }
  Type type() const;
  bool is(Type t) const { return exists() && type() == t; }
  bool is_null() const { return is(Type::null); }

  bool boolean() const;          // false unless a boolean true
  double number() const;         // 0 unless a number
  // True when the value is a number written as an integer that fits int64 (no fraction, no exponent).
  bool integer(int64_t* out) const;
  std::string_view str() const;  // decoded bytes (may hold NUL) of a string; empty otherwise

  size_t size() const;                      // items of an array, members of an object, else 0
  Value get(std::string_view key) const;    // member of an object (absent: !exists())
  // Children in order: for (Value v = a.first(); v.exists(); v = v.next()) ...; an object's children
  // are its members' values, each with its key().
  Value first() const;
  Value next() const;
  std::string_view key() const;  // the member name of an object's child; empty otherwise
  size_t offset() const;         // byte offset of the value in the text (for messages)

 private:
  friend class Document;
  Value(const Document* d, uint32_t i) : doc_(d), idx_(i) {}
  const Document* doc_ = nullptr;
  uint32_t idx_ = 0;
  uint32_t parent_end_ = 0;  // index one past the parent's subtree (where next() stops)
};

class Document {
 public:
  // Parses text[0..len). `what` names the input in messages (e.g. "config.json").
  Status parse(const char* text, size_t len, const char* what, const Limits& limits = Limits());
  Value root() const { return nodes_.empty() ? Value() : Value(this, 0); }

 private:
  friend class Value;
  Status parse_text(const char* text, size_t len, const char* what, const Limits& limits);
  struct Node {
    Type type = Type::null;
    bool flag = false;     // boolean value; for numbers: integer() is valid
    uint32_t end = 0;      // index one past this value's subtree
    uint32_t count = 0;    // children
    uint32_t key_off = 0, key_len = 0;
    uint32_t str_off = 0, str_len = 0;
    uint64_t offset = 0;   // in the text
    double num = 0;
    int64_t i64 = 0;
  };
  std::vector<Node> nodes_;
  std::string pool_;  // decoded strings and keys
};

}  // namespace qtf::json
