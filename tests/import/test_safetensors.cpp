// engine/import/safetensors: the header, dtypes, shapes and ranges of safetensors files, sharded
// directories, and hostile files (truncated at every byte, huge header length, overlapping or
// out-of-bounds offsets, sizes that do not match the dtype).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "import/safetensors.h"
#include "support/safetensors_writer.h"

using namespace qtf;
using namespace qtf::import;
using qtf::testing::StEntry;
using qtf::testing::make_safetensors;

namespace {

std::vector<StEntry> small_entries() {
  std::vector<StEntry> e;
  float f[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
  e.push_back({"a.weight", "F32", {2, 3}, std::vector<uint8_t>((uint8_t*)f, (uint8_t*)f + 24)});
  uint16_t h[2] = {0x3C00, 0xC000};  // f16 1, -2
  e.push_back({"b", "F16", {2}, std::vector<uint8_t>((uint8_t*)h, (uint8_t*)h + 4)});
  uint16_t bf[3] = {0x3F80, 0xBF00, 0x4049};  // bf16 1, -0.5, 3.140625
  e.push_back({"c", "BF16", {3, 1}, std::vector<uint8_t>((uint8_t*)bf, (uint8_t*)bf + 6)});
  int64_t ids[2] = {5, 6};
  e.push_back({"position_ids", "I64", {1, 2}, std::vector<uint8_t>((uint8_t*)ids, (uint8_t*)ids + 16)});
  return e;
}

std::string parse_error(const std::vector<uint8_t>& b) {
  std::vector<StTensor> out;
  Status s = parse_safetensors(b.data(), b.size(), "m.safetensors", &out);
  return s.ok() ? "" : s.message();
}

// A file with this header JSON and `data` bytes after it.
std::vector<uint8_t> with_header(const std::string& header, size_t data = 64) {
  std::vector<uint8_t> b(8 + header.size() + data, 0);
  uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

}  // namespace

TEST_CASE("safetensors: a valid file: dtypes, shapes, values, metadata ignored") {
  std::vector<uint8_t> b = make_safetensors(small_entries(), "{\"format\":\"pt\"}");
  std::vector<StTensor> t;
  Status s = parse_safetensors(b.data(), b.size(), "m.safetensors", &t);
  REQUIRE_MESSAGE(s.ok(), s.message());
  REQUIRE(t.size() == 4);
  CHECK(t[0].name == "a.weight");
  CHECK(t[0].type == StType::f32);
  CHECK(t[0].shape == std::vector<uint64_t>{2, 3});
  CHECK(t[0].elements == 6);
  float f[6];
  REQUIRE(st_to_f32(t[0], f).ok());
  CHECK(f[2] == 3.5f);
  CHECK(f[5] == -7.f);
  REQUIRE(st_to_f32(t[1], f).ok());
  CHECK(f[0] == 1.f);
  CHECK(f[1] == -2.f);
  REQUIRE(st_to_f32(t[2], f).ok());
  CHECK(f[0] == 1.f);
  CHECK(f[1] == -0.5f);
  CHECK(f[2] == 3.140625f);
  CHECK(t[3].type == StType::other);
  Status bad = st_to_f32(t[3], f);
  CHECK(std::string(bad.message()) ==
        "m.safetensors: tensor 'position_ids' has dtype I64; the importer reads F32, F16 and BF16");
  // An empty file of tensors and a zero-element tensor are fine.
  CHECK(parse_error(with_header("{}", 0)).empty());
  CHECK(parse_error(with_header("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]}}", 0)).empty());
}

TEST_CASE("safetensors: truncated at every byte: one clear error, never a crash") {
  std::vector<uint8_t> b = make_safetensors(small_entries(), "");
  for (size_t n = 0; n < b.size(); ++n) {
    std::vector<uint8_t> cut(b.begin(), b.begin() + (long)n);  // exact size: ASan sees any overread
    CHECK_MESSAGE(!parse_error(cut).empty(), n);
  }
  CHECK(parse_error(std::vector<uint8_t>(b.begin(), b.begin() + 5)) ==
        "m.safetensors: 5 bytes, too short for a safetensors header");
}

TEST_CASE("safetensors: hostile headers") {
  // Header length huge, or longer than the file.
  std::vector<uint8_t> b(16, 0);
  uint64_t n = UINT64_MAX;
  std::memcpy(b.data(), &n, 8);
  CHECK(parse_error(b) == "m.safetensors: safetensors header length 18446744073709551615 is over the 104857600-byte limit");
  n = 9;
  std::memcpy(b.data(), &n, 8);
  CHECK(parse_error(b) == "m.safetensors: safetensors header length 9 but only 8 bytes follow (truncated?)");
  // Not JSON / not an object.
  CHECK(parse_error(with_header("[]")) == "m.safetensors: the header is not a JSON object");
  CHECK(parse_error(with_header("{\"a\":")).find("m.safetensors header: unexpected end of input at byte 5") == 0);
  // Deep nesting in the header is refused by the JSON reader's depth limit.
  CHECK(parse_error(with_header(std::string(100000, '['))).find("nesting too deep") != std::string::npos);
  auto one = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
    return "{\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offs + "}}";
  };
  CHECK(parse_error(with_header(one("F32", "[2,2]", "[0,16]"))).empty());
  CHECK(parse_error(with_header(one("Q4", "[2,2]", "[0,16]"))) == "m.safetensors: tensor 't' has unknown dtype 'Q4'");
  CHECK(parse_error(with_header(one("F32", "[2,2]", "[0,12]"))) ==
        "m.safetensors: tensor 't': 12 bytes but F32 x 4 elements need 16");
  CHECK(parse_error(with_header(one("F16", "[2,2]", "[0,16]"))) ==
        "m.safetensors: tensor 't': 16 bytes but F16 x 4 elements need 8");
  CHECK(parse_error(with_header(one("F32", "[2,2]", "[60,76]"))) ==
        "m.safetensors: tensor 't': data_offsets [60, 76] outside the 64 data bytes");
  CHECK(parse_error(with_header(one("F32", "[2,2]", "[16,0]"))).find("outside the 64 data bytes") != std::string::npos);
  CHECK(parse_error(with_header(one("F32", "[2,2]", "[-16,0]"))).find("data_offsets is not") != std::string::npos);
  CHECK(parse_error(with_header(one("F32", "[2,2]", "[0]"))).find("data_offsets is not") != std::string::npos);
  CHECK(parse_error(with_header(one("F32", "[2,2]", "[0,1e1]"))).find("data_offsets is not") != std::string::npos);
  CHECK(parse_error(with_header(one("F32", "[2,-2]", "[0,16]"))).find("not a non-negative integer") != std::string::npos);
  CHECK(parse_error(with_header(one("F32", "[2.5]", "[0,16]"))).find("not a non-negative integer") != std::string::npos);
  CHECK(parse_error(with_header(one("F32", "[4294967296,4294967296,4294967296]", "[0,16]"))) ==
        "m.safetensors: tensor 't': shape overflows");
  CHECK(parse_error(with_header(one("F32", "[4611686018427387904]", "[0,16]"))) == "m.safetensors: tensor 't': size overflows");
  CHECK(parse_error(with_header(one("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]"))).find("9 dimensions") != std::string::npos);
  CHECK(parse_error(with_header(one("F32", "\"x\"", "[0,16]"))).find("needs dtype (string)") != std::string::npos);
  CHECK(parse_error(with_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}"))
            .find("needs exactly dtype, shape and data_offsets") != std::string::npos);
  CHECK(parse_error(with_header("{\"t\":[1]}")) == "m.safetensors: tensor 't' is not an object");
  CHECK(parse_error(with_header("{\"__metadata__\":1}")) == "m.safetensors: __metadata__ is not an object");
  // Two tensors over the same bytes; a duplicate name (the JSON reader refuses duplicate keys).
  CHECK(parse_error(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}")) ==
        "m.safetensors: tensors 'a' and 'b' overlap");
  CHECK(parse_error(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}")).empty());  // touching
  CHECK(parse_error(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                                "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}"))
            .find("duplicate key") != std::string::npos);
}

TEST_CASE("safetensors: a sharded directory (model.safetensors.index.json)") {
  char tmpl[] = "/tmp/qtf_st_XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  std::vector<StEntry> e = small_entries();
  qtf::testing::write_file(dir + "/s1.safetensors", make_safetensors({e[0], e[1]}, ""));
  qtf::testing::write_file(dir + "/s2.safetensors", make_safetensors({e[2], e[3]}, ""));
  const std::string map = "{\"metadata\":{},\"weight_map\":{\"a.weight\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                          "\"c\":\"s2.safetensors\",\"position_ids\":\"s2.safetensors\"}}";
  qtf::testing::write_file(dir + "/model.safetensors.index.json", std::vector<uint8_t>(map.begin(), map.end()));
  SafetensorsSet set;
  Status s = set.open_dir(dir);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(set.tensors().size() == 4);
  REQUIRE(set.find("c") != nullptr);
  CHECK(set.find("c")->file == "s2.safetensors");
  CHECK(set.find("nope") == nullptr);

  auto index_error = [&](const std::string& m) {
    qtf::testing::write_file(dir + "/model.safetensors.index.json", std::vector<uint8_t>(m.begin(), m.end()));
    SafetensorsSet t;
    Status st = t.open_dir(dir);
    return st.ok() ? std::string() : std::string(st.message());
  };
  CHECK(index_error("{\"weight_map\":{\"a.weight\":\"../s1.safetensors\"}}") ==
        "model.safetensors.index.json: weight_map['a.weight'] is not a file name in the model directory");
  CHECK(index_error("{\"weight_map\":{\"a.weight\":\"/etc/passwd\"}}").find("not a file name") != std::string::npos);
  CHECK(index_error("{\"weight_map\":{\"c\":\"s1.safetensors\"}}") ==
        "model.safetensors.index.json: tensor 'c' is not in s1.safetensors");
  CHECK(index_error("{\"weight_map\":{\"a.weight\":\"s3.safetensors\"}}").find("cannot open") != std::string::npos);
  CHECK(index_error("{\"weight_map\":[]}").find("weight_map (an object") != std::string::npos);
  CHECK(index_error("{\"weight_map\":{\"a.weight\":1}}").find("not a file name") != std::string::npos);
  // A tensor in two shards, both listed: the map lists each name once (JSON), so this is the map's pick.
  qtf::testing::write_file(dir + "/s3.safetensors", make_safetensors({e[0]}, ""));
  CHECK(index_error("{\"weight_map\":{\"a.weight\":\"s3.safetensors\",\"b\":\"s1.safetensors\"}}").empty());
  unlink((dir + "/model.safetensors.index.json").c_str());
  SafetensorsSet none;
  CHECK(std::string(none.open_dir(dir).message()) == "neither model.safetensors nor model.safetensors.index.json is readable");
  for (const char* f : {"s1.safetensors", "s2.safetensors", "s3.safetensors"}) unlink((dir + "/" + f).c_str());
  rmdir(dir.c_str());
}
