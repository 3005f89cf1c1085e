#include "import/json.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "format/format.h"

namespace qtf::json {

const char* type_name(Type t) {
  switch (t) {
    case Type::null: return "null";
    case Type::boolean: return "a boolean";
    case Type::number: return "a number";
    case Type::string: return "a string";
    case Type::array: return "an array";
    case Type::object: return "an object";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------------
// Value

Type Value::type() const { return doc_ ? doc_->nodes_[idx_].type : Type::null; }
bool Value::boolean() const { return is(Type::boolean) && doc_->nodes_[idx_].flag; }
double Value::number() const { return is(Type::number) ? doc_->nodes_[idx_].num : 0.0; }

bool Value::integer(int64_t* out) const {
  if (!is(Type::number) || !doc_->nodes_[idx_].flag) return false;
  *out = doc_->nodes_[idx_].i64;
  return true;
}

std::string_view Value::str() const {
  if (!is(Type::string)) return {};
  const auto& n = doc_->nodes_[idx_];
  return std::string_view(doc_->pool_.data() + n.str_off, n.str_len);
}

size_t Value::size() const {
  return is(Type::array) || is(Type::object) ? doc_->nodes_[idx_].count : 0;
}

Value Value::first() const {
  if (size() == 0) return Value();
  Value v(doc_, idx_ + 1);
  v.parent_end_ = doc_->nodes_[idx_].end;
  return v;
}

Value Value::next() const {
  if (!doc_) return Value();
  uint32_t j = doc_->nodes_[idx_].end;
  if (j >= parent_end_) return Value();
  Value v(doc_, j);
  v.parent_end_ = parent_end_;
  return v;
}

std::string_view Value::key() const {
  if (!doc_) return {};
  const auto& n = doc_->nodes_[idx_];
  return std::string_view(doc_->pool_.data() + n.key_off, n.key_len);
}

size_t Value::offset() const { return doc_ ? (size_t)doc_->nodes_[idx_].offset : 0; }

Value Value::get(std::string_view k) const {
  if (!is(Type::object)) return Value();
  for (Value v = first(); v.exists(); v = v.next())
    if (v.key() == k) return v;
  return Value();
}

// ---------------------------------------------------------------------------------------------------
// Parser: one loop over the text with an explicit stack of open containers (no recursion).

namespace {

class Parser {
 public:
  Parser(const char* t, size_t n, const char* what, const Limits& lim, std::string* pool)
      : t_(t), n_(n), what_(what), lim_(lim), pool_(pool) {}

  Status error(const char* problem, size_t at) const {
    return Status::error(Err::bad_value, "%s: %s at byte %lu", what_, problem, (unsigned long)at);
  }

  void ws() {
    while (i_ < n_ && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\t' || t_[i_] == '\r')) ++i_;
  }
  size_t at() const { return i_; }
  bool done() const { return i_ >= n_; }
  char peek() const { return t_[i_]; }
  void skip() { ++i_; }

  // A string at t_[i_] == '"', decoded into the pool.
  Status string(uint32_t* off, uint32_t* len) {
    const size_t start = i_;
    ++i_;
    const size_t pool_start = pool_->size();
    for (;;) {
      if (i_ >= n_) return error("unterminated string", start);
      if (pool_->size() - pool_start > lim_.max_string) return error("string too long", start);
      const uint8_t c = (uint8_t)t_[i_];
      if (c == '"') {
        ++i_;
        break;
      }
      if (c < 0x20) return error("control character in string", i_);
      if (c == '\\') {
        QTF_TRY(escape());
        continue;
      }
      if (c < 0x80) {
        pool_->push_back((char)c);
        ++i_;
        continue;
      }
      size_t k = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      if (k == 0 || i_ + k > n_ || !format::utf8_valid(t_ + i_, k)) return error("invalid UTF-8 in string", i_);
      pool_->append(t_ + i_, k);
      i_ += k;
    }
    if (pool_->size() > UINT32_MAX) return error("strings too large", start);
    *off = (uint32_t)pool_start;
    *len = (uint32_t)(pool_->size() - pool_start);
    return Status::success();
  }

  Status literal(const char* word) {
    size_t k = std::strlen(word);
    if (n_ - i_ < k || std::memcmp(t_ + i_, word, k) != 0) return error("invalid literal", i_);
    i_ += k;
    return Status::success();
  }

  // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  Status number(double* num, int64_t* i64, bool* is_int) {
    const size_t start = i_;
    auto digits = [&]() {
      size_t s = i_;
      while (i_ < n_ && t_[i_] >= '0' && t_[i_] <= '9') ++i_;
      return i_ - s;
    };
    if (i_ < n_ && t_[i_] == '-') ++i_;
    if (i_ < n_ && t_[i_] == '0') {
      ++i_;
    } else if (digits() == 0) {
      return error("invalid value", start);
    }
    bool integral = true;
    if (i_ < n_ && t_[i_] == '.') {
      ++i_;
      integral = false;
      if (digits() == 0) return error("invalid number", start);
    }
    if (i_ < n_ && (t_[i_] == 'e' || t_[i_] == 'E')) {
      ++i_;
      integral = false;
      if (i_ < n_ && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
      if (digits() == 0) return error("invalid number", start);
    }
    const char* b = t_ + start;
    const char* e = t_ + i_;
    *is_int = false;
    if (integral) {
      auto r = std::from_chars(b, e, *i64);
      *is_int = r.ec == std::errc() && r.ptr == e;
    }
    auto r = std::from_chars(b, e, *num);
    if (r.ec == std::errc::result_out_of_range) return error("number out of range", start);
    if (r.ec != std::errc() || r.ptr != e) return error("invalid number", start);
    return Status::success();
  }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool hex4(size_t p, uint32_t* v) const {
    if (p + 4 > n_) return false;
    *v = 0;
    for (size_t k = 0; k < 4; ++k) {
      int h = hex(t_[p + k]);
      if (h < 0) return false;
      *v = *v * 16 + (uint32_t)h;
    }
    return true;
  }

  Status escape() {
    const size_t start = i_;
    if (i_ + 1 >= n_) return error("unterminated string", start);
    const char c = t_[i_ + 1];
    const char* simple = "\"\\/bfnrt";
    const char* to = "\"\\/\b\f\n\r\t";
    if (const char* s = c ? std::strchr(simple, c) : nullptr) {
      pool_->push_back(to[s - simple]);
      i_ += 2;
      return Status::success();
    }
    if (c != 'u') return error("invalid escape", start);
    uint32_t cp;
    if (!hex4(i_ + 2, &cp)) return error("invalid \\u escape", start);
    i_ += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return error("unpaired low surrogate", start);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t lo;
      if (i_ + 1 >= n_ || t_[i_] != '\\' || t_[i_ + 1] != 'u' || !hex4(i_ + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
        return error("unpaired high surrogate", start);
      i_ += 6;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    char u[4];
    size_t k;
    if (cp < 0x80) {
      u[0] = (char)cp;
      k = 1;
    } else if (cp < 0x800) {
      u[0] = (char)(0xC0 | (cp >> 6));
      u[1] = (char)(0x80 | (cp & 0x3F));
      k = 2;
    } else if (cp < 0x10000) {
      u[0] = (char)(0xE0 | (cp >> 12));
      u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
      u[2] = (char)(0x80 | (cp & 0x3F));
      k = 3;
    } else {
      u[0] = (char)(0xF0 | (cp >> 18));
      u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
      u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
      u[3] = (char)(0x80 | (cp & 0x3F));
      k = 4;
    }
    pool_->append(u, k);
    return Status::success();
  }

  const char* t_;
  size_t n_;
  const char* what_;
  const Limits& lim_;
  std::string* pool_;
  size_t i_ = 0;
};

}  // namespace

Status Document::parse(const char* text, size_t len, const char* what, const Limits& lim) {
  nodes_.clear();
  pool_.clear();
  Status s = parse_text(text, len, what, lim);
  if (!s.ok()) {  // nothing half-built stays reachable
    nodes_.clear();
    pool_.clear();
  }
  return s;
}

Status Document::parse_text(const char* text, size_t len, const char* what, const Limits& lim) {
  if (what == nullptr) what = "json";
  if (text == nullptr && len > 0) return Status::error(Err::invalid_argument, "%s: no text", what);
  if (len > lim.max_bytes)
    return Status::error(Err::out_of_range, "%s: %lu bytes, more than the %lu this reader takes", what,
                         (unsigned long)len, (unsigned long)lim.max_bytes);
  Parser p(text, len, what, lim, &pool_);
  std::vector<uint32_t> stack;  // open containers
  uint32_t key_off = 0, key_len = 0;

  // Closes the container on top of the stack: its extent, and a check for duplicate keys (sorted; the
  // later of two equal keys is named).
  auto close = [&]() -> Status {
    Node& c = nodes_[stack.back()];
    c.end = (uint32_t)nodes_.size();
    if (c.type == Type::object && c.count > 1) {
      std::vector<uint32_t> kids;
      kids.reserve(c.count);
      for (uint32_t j = stack.back() + 1; j < c.end; j = nodes_[j].end) kids.push_back(j);
      auto key = [&](uint32_t j) { return std::string_view(pool_.data() + nodes_[j].key_off, nodes_[j].key_len); };
      std::stable_sort(kids.begin(), kids.end(), [&](uint32_t a, uint32_t b) { return key(a) < key(b); });
      for (size_t k = 1; k < kids.size(); ++k)
        if (key(kids[k]) == key(kids[k - 1])) return p.error("duplicate key", (size_t)nodes_[kids[k]].offset);
    }
    stack.pop_back();
    return Status::success();
  };
  // After '{' or ',' in an object: a key and ':'.
  auto member_key = [&]() -> Status {
    p.ws();
    if (p.done() || p.peek() != '"') return p.error("expected a string key", p.at());
    QTF_TRY(p.string(&key_off, &key_len));
    p.ws();
    if (p.done() || p.peek() != ':') return p.error("expected ':'", p.at());
    p.skip();
    return Status::success();
  };

  for (;;) {
    // A value.
    p.ws();
    if (p.done()) return p.error("unexpected end of input", p.at());
    if (nodes_.size() >= lim.max_nodes) return p.error("too many values", p.at());
    Node n;
    n.offset = p.at();
    if (!stack.empty()) {
      Node& parent = nodes_[stack.back()];
      ++parent.count;
      if (parent.type == Type::object) {
        n.key_off = key_off;
        n.key_len = key_len;
      }
    }
    const char c = p.peek();
    if (c == '{' || c == '[') {
      if (stack.size() >= lim.max_depth) return p.error("nesting too deep", p.at());
      n.type = c == '{' ? Type::object : Type::array;
      p.skip();
      stack.push_back((uint32_t)nodes_.size());
      nodes_.push_back(n);
      p.ws();
      if (!p.done() && p.peek() == (c == '{' ? '}' : ']')) {
        p.skip();
        QTF_TRY(close());
      } else {
        if (c == '{') QTF_TRY(member_key());
        continue;
      }
    } else {
      if (c == '"') {
        n.type = Type::string;
        QTF_TRY(p.string(&n.str_off, &n.str_len));
      } else if (c == 't' || c == 'f') {
        n.type = Type::boolean;
        n.flag = c == 't';
        QTF_TRY(p.literal(c == 't' ? "true" : "false"));
      } else if (c == 'n') {
        QTF_TRY(p.literal("null"));
      } else {
        n.type = Type::number;
        QTF_TRY(p.number(&n.num, &n.i64, &n.flag));
      }
      n.end = (uint32_t)nodes_.size() + 1;
      nodes_.push_back(n);
    }
    // After a value: ',' or the container's close, as many closes as there are.
    for (;;) {
      p.ws();
      if (stack.empty()) {
        if (!p.done()) return p.error("unexpected text after the value", p.at());
        return Status::success();
      }
      if (p.done()) return p.error("unexpected end of input", p.at());
      const bool in_object = nodes_[stack.back()].type == Type::object;
      const char d = p.peek();
      if (d == ',') {
        p.skip();
        if (in_object) QTF_TRY(member_key());
        break;
      }
      if (d == (in_object ? '}' : ']')) {
        p.skip();
        QTF_TRY(close());
        continue;
      }
      return p.error(in_object ? "expected ',' or '}'" : "expected ',' or ']'", p.at());
    }
  }
}

}  // namespace qtf::json
