// engine/import/json: the bounded JSON reader the importers use, on valid and hostile text.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "import/json.h"

using qtf::json::Document;
using qtf::json::Limits;
using qtf::json::Type;
using qtf::json::Value;

namespace {

qtf::Status parse(Document* d, const std::string& s, const Limits& lim = Limits()) {
  return d->parse(s.data(), s.size(), "t.json", lim);
}

// The error message of parsing s (empty when it parses).
std::string error_of(const std::string& s, const Limits& lim = Limits()) {
  Document d;
  qtf::Status st = parse(&d, s, lim);
  if (st.ok()) return "";
  CHECK(!d.root().exists());  // nothing half-built is reachable
  return st.message();
}

}  // namespace

TEST_CASE("json: values, members, order and lookups") {
  Document d;
  const std::string text =
      " {\"a\": 1, \"b\": [true, false, null, -2.5e3, \"x\"], \"c\": {\"d\": \"\\u00e9\\n\"},\n \"e\": [] , \"f\": {}} ";
  REQUIRE(parse(&d, text).ok());
  Value r = d.root();
  REQUIRE(r.is(Type::object));
  CHECK(r.size() == 5);
  int64_t i = 0;
  CHECK(r.get("a").integer(&i));
  CHECK(i == 1);
  CHECK(r.get("a").number() == 1.0);
  Value b = r.get("b");
  REQUIRE(b.is(Type::array));
  CHECK(b.size() == 5);
  Value v = b.first();
  CHECK(v.boolean());
  v = v.next();
  CHECK(v.is(Type::boolean));
  CHECK(!v.boolean());
  v = v.next();
  CHECK(v.is_null());
  v = v.next();
  CHECK(v.number() == -2500.0);
  CHECK(!v.integer(&i));  // written with an exponent
  v = v.next();
  CHECK(v.str() == "x");
  CHECK(!v.next().exists());  // the end of b, not the next member of r
  CHECK(r.get("c").get("d").str() == "\xc3\xa9\n");
  CHECK(r.get("e").is(Type::array));
  CHECK(r.get("e").size() == 0);
  CHECK(!r.get("e").first().exists());
  CHECK(r.get("f").is(Type::object));
  CHECK(!r.get("zz").exists());
  CHECK(!r.get("a").get("x").exists());  // lookups on a non-object find nothing
  // members in order with their keys
  std::string keys;
  for (Value m = r.first(); m.exists(); m = m.next()) keys += std::string(m.key());
  CHECK(keys == "abcef");
  CHECK(r.get("c").offset() == text.find("{\"d\""));
}

TEST_CASE("json: strings: escapes, surrogate pairs, raw UTF-8, NUL") {
  Document d;
  REQUIRE(parse(&d, "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u0000z\"").ok());
  CHECK(d.root().str() == std::string("\"\\/\b\f\n\r\tA\0z", 11));
  REQUIRE(parse(&d, "\"\\ud83d\\ude00 \xe2\x96\x81 \xf0\x9f\x98\x80\"").ok());
  CHECK(d.root().str() == "\xf0\x9f\x98\x80 \xe2\x96\x81 \xf0\x9f\x98\x80");
  CHECK(error_of("\"\\ud83d\"").find("unpaired high surrogate at byte 1") != std::string::npos);
  CHECK(error_of("\"\\ud83d\\u0041\"").find("unpaired high surrogate") != std::string::npos);
  CHECK(error_of("\"\\ude00\"").find("unpaired low surrogate") != std::string::npos);
  CHECK(error_of("\"\\x41\"") == "t.json: invalid escape at byte 1");
  CHECK(error_of("\"\\u12G4\"").find("invalid \\u escape") != std::string::npos);
  CHECK(error_of("\"\\u12\"").find("invalid \\u escape") != std::string::npos);
  CHECK(error_of("\"a\nb\"") == "t.json: control character in string at byte 2");
  CHECK(error_of("\"\xc0\xaf\"").find("invalid UTF-8") != std::string::npos);      // overlong '/'
  CHECK(error_of("\"\xed\xa0\x80\"").find("invalid UTF-8") != std::string::npos);  // encoded surrogate
  CHECK(error_of("\"\xf4\x90\x80\x80\"").find("invalid UTF-8") != std::string::npos);  // > U+10FFFF
  CHECK(error_of("\"\xe2\x96\"").find("invalid UTF-8") != std::string::npos);  // cut short
  CHECK(error_of("\"\x80\"").find("invalid UTF-8") != std::string::npos);
  CHECK(error_of("\"abc") == "t.json: unterminated string at byte 0");
  CHECK(error_of("\"abc\\") == "t.json: unterminated string at byte 4");  // at the escape
}

TEST_CASE("json: numbers: grammar and range") {
  Document d;
  int64_t i = 0;
  REQUIRE(parse(&d, "[0, -0, 9223372036854775807, -9223372036854775808, 9223372036854775808, 1.5, 1e-6, 2E+2]").ok());
  Value v = d.root().first();
  CHECK((v.integer(&i) && i == 0));
  v = v.next();
  CHECK((v.integer(&i) && i == 0));
  v = v.next();
  CHECK((v.integer(&i) && i == INT64_MAX));
  v = v.next();
  CHECK((v.integer(&i) && i == INT64_MIN));
  v = v.next();
  CHECK(!v.integer(&i));  // beyond int64: a double only
  CHECK(v.number() == 9223372036854775808.0);
  v = v.next();
  CHECK(v.number() == 1.5);
  v = v.next();
  CHECK(v.number() == 1e-6);
  v = v.next();
  CHECK(v.number() == 200.0);
  for (const char* bad : {"01", "+1", ".5", "1.", "1e", "1e+", "-", "--1", "0x10", "1.5.2", "NaN", "Infinity", "-Infinity"})
    CHECK_MESSAGE(!error_of(bad).empty(), bad);
  CHECK(error_of("1e400") == "t.json: number out of range at byte 0");
  CHECK(error_of("[1, -1e999]") == "t.json: number out of range at byte 4");
}

TEST_CASE("json: structure errors name the byte") {
  CHECK(error_of("") == "t.json: unexpected end of input at byte 0");
  CHECK(error_of("   ") == "t.json: unexpected end of input at byte 3");
  CHECK(error_of("{\"a\":1,}") == "t.json: expected a string key at byte 7");
  CHECK(error_of("[1,]") == "t.json: invalid value at byte 3");
  CHECK(error_of("[1 2]") == "t.json: expected ',' or ']' at byte 3");
  CHECK(error_of("{\"a\" 1}") == "t.json: expected ':' at byte 5");
  CHECK(error_of("{\"a\":1 \"b\":2}") == "t.json: expected ',' or '}' at byte 7");
  CHECK(error_of("{1:2}") == "t.json: expected a string key at byte 1");
  CHECK(error_of("[1] [2]") == "t.json: unexpected text after the value at byte 4");
  CHECK(error_of("tru") == "t.json: invalid literal at byte 0");
  CHECK(error_of("nulll") == "t.json: unexpected text after the value at byte 4");
  CHECK(error_of("{\"a\":1,\"b\":2,\"a\":3}") == "t.json: duplicate key at byte 17");
  CHECK(error_of("\xef\xbb\xbf{}") == "t.json: invalid value at byte 0");  // a BOM is not JSON
  CHECK(error_of("// c\n{}") == "t.json: invalid value at byte 0");
  CHECK(error_of("[1]\0", Limits()).empty());  // std::string("[1]\0") stops at the NUL
  CHECK(error_of(std::string("[1]\0", 4)) == "t.json: unexpected text after the value at byte 3");
}

TEST_CASE("json: every prefix of a document is refused, none crashes") {
  const std::string text = "{\"vocab\": {\"a\": 0, \"\\u2581b\": 1}, \"merges\": [[\"a\", \"b\"], \"a b\"], \"x\": -1.5e-3, "
                           "\"t\": [true, false, null]}";
  Document d;
  REQUIRE(parse(&d, text).ok());
  for (size_t n = 0; n < text.size(); ++n) CHECK_MESSAGE(!error_of(text.substr(0, n)).empty(), n);
}

TEST_CASE("json: hostile sizes: deep nesting, huge strings, many values") {
  // 1e6 nested arrays: refused at the depth limit, without recursion.
  std::string deep(1000000, '[');
  CHECK(error_of(deep) == "t.json: nesting too deep at byte 64");
  deep += std::string(1000000, ']');
  CHECK(error_of(deep) == "t.json: nesting too deep at byte 64");
  std::string deep_obj;
  for (int i = 0; i < 100000; ++i) deep_obj += "{\"a\":";
  CHECK(error_of(deep_obj) == "t.json: nesting too deep at byte 320");
  // Exactly at the limit is fine.
  Limits lim;
  lim.max_depth = 4;
  CHECK(error_of("[[[[1]]]]", lim).empty());
  CHECK(error_of("[[[[[1]]]]]", lim) == "t.json: nesting too deep at byte 4");

  // A long string within the limits; one beyond max_string; a text beyond max_bytes.
  std::string big = "\"" + std::string(1 << 20, 'x') + "\"";
  Document d;
  REQUIRE(parse(&d, big).ok());
  CHECK(d.root().str().size() == (1u << 20));
  lim = Limits();
  lim.max_string = 1000;
  CHECK(error_of(big, lim) == "t.json: string too long at byte 0");
  lim = Limits();
  lim.max_bytes = 100;
  CHECK(error_of(big, lim) == "t.json: 1048578 bytes, more than the 100 this reader takes");
  lim = Limits();
  lim.max_nodes = 10;
  CHECK(error_of("[1,2,3,4,5,6,7,8,9,10]", lim) == "t.json: too many values at byte 19");
  CHECK(error_of("[1,2,3,4,5,6,7,8,9]", lim).empty());  // 10 values

  // Many members: the duplicate check is sorted, not quadratic.
  std::string wide = "{";
  for (int i = 0; i < 200000; ++i) wide += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  wide += "}";
  REQUIRE(parse(&d, wide).ok());
  CHECK(d.root().size() == 200000);
  int64_t i = 0;
  CHECK((d.root().get("k199999").integer(&i) && i == 199999));
  wide.insert(wide.size() - 1, ",\"k5\":0");
  CHECK(error_of(wide).find("duplicate key") != std::string::npos);
}
