// A small JSON reader for test fixtures (objects, arrays, numbers, strings, true/false/null).
#pragma once
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace qtf::testing {

struct Json {
  enum Type { null, boolean, number, string, array, object } type = null;
  double num = 0;
  std::string str;
  std::vector<Json> items;
  std::map<std::string, Json> fields;
  const Json& operator[](const std::string& k) const {
    static const Json none;
    auto it = fields.find(k);
    return it == fields.end() ? none : it->second;
  }
  const Json& operator[](size_t i) const { return items.at(i); }
  size_t size() const { return type == array ? items.size() : fields.size(); }
  bool has(const std::string& k) const { return fields.count(k) != 0; }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}
  bool parse(Json* out) {
    bool ok = value(out);
    ws();
    return ok && i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool lit(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }
  bool str(std::string* out) {
    if (s_[i_] != '"') return false;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\' && i_ < s_.size()) {
        char e = s_[i_++];
        if (e == 'n') out->push_back('\n');
        else if (e == 't') out->push_back('\t');
        else if (e == 'r') out->push_back('\r');
        else if (e == 'u' && i_ + 4 <= s_.size()) {
          unsigned cp = (unsigned)std::strtoul(s_.substr(i_, 4).c_str(), nullptr, 16);
          i_ += 4;
          if (cp < 0x80) out->push_back((char)cp);
          else if (cp < 0x800) { out->push_back((char)(0xC0 | cp >> 6)); out->push_back((char)(0x80 | (cp & 63))); }
          else { out->push_back((char)(0xE0 | cp >> 12)); out->push_back((char)(0x80 | ((cp >> 6) & 63))); out->push_back((char)(0x80 | (cp & 63))); }
        } else out->push_back(e);
      } else {
        out->push_back(c);
      }
    }
    if (i_ >= s_.size()) return false;
    ++i_;
    return true;
  }
  bool value(Json* v) {
    ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') {
      v->type = Json::object;
      ++i_;
      ws();
      if (s_[i_] == '}') { ++i_; return true; }
      for (;;) {
        ws();
        std::string k;
        if (!str(&k)) return false;
        ws();
        if (s_[i_++] != ':') return false;
        if (!value(&v->fields[k])) return false;
        ws();
        if (s_[i_] == ',') { ++i_; continue; }
        if (s_[i_] == '}') { ++i_; return true; }
        return false;
      }
    }
    if (c == '[') {
      v->type = Json::array;
      ++i_;
      ws();
      if (s_[i_] == ']') { ++i_; return true; }
      for (;;) {
        v->items.emplace_back();
        if (!value(&v->items.back())) return false;
        ws();
        if (s_[i_] == ',') { ++i_; continue; }
        if (s_[i_] == ']') { ++i_; return true; }
        return false;
      }
    }
    if (c == '"') { v->type = Json::string; return str(&v->str); }
    if (lit("true")) { v->type = Json::boolean; v->num = 1; return true; }
    if (lit("false")) { v->type = Json::boolean; v->num = 0; return true; }
    if (lit("null")) { v->type = Json::null; return true; }
    if (lit("NaN")) { v->type = Json::number; v->num = NAN; return true; }
    char* end;
    v->num = std::strtod(s_.c_str() + i_, &end);
    if (end == s_.c_str() + i_) return false;
    v->type = Json::number;
    i_ = (size_t)(end - s_.c_str());
    return true;
  }
  const std::string& s_;
  size_t i_ = 0;
};

inline bool read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

inline bool load_json(const std::string& path, Json* out) {
  std::string text;
  return read_file(path, &text) && JsonParser(text).parse(out);
}

}  // namespace qtf::testing
