// The whole-file checksum is computed once per file (engine/host/verified.h): a file verified before is
// trusted by its identity (device, inode, size, mtime, ctime) and stored checksum; any write to it, a new
// file, a file changed within the last 2 s, or the record switched off means a full check again.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "host/session.h"
#include "host/verified.h"

using namespace qtf;

namespace {

std::string scratch(const char* name) {
  const char* t = std::getenv("TMPDIR");
  return std::string(t && t[0] ? t : "/tmp") + "/qtf_verified_" + std::to_string(getpid()) + "_" + name;
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const std::vector<char>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(b.data(), (std::streamsize)b.size());
}

struct RecordFile {  // this test's own record, removed at the end
  std::string path = scratch("record");
  RecordFile() { setenv("QTF_VERIFIED_FILES", path.c_str(), 1); }
  ~RecordFile() {
    std::remove(path.c_str());
    unsetenv("QTF_VERIFIED_FILES");
  }
};

}  // namespace

TEST_CASE("a file verified once is trusted on the next load; a write to it, or a new file, is checked again") {
  RecordFile record;
  const std::string fixture = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/dense.qtf";
  const std::string model = scratch("model.qtf");
  write_all(model, read_all(fixture));
  {  // just written: changed within 2 s, so not recorded ("racily clean", as git says)
    host::LoadedModel a, b;
    REQUIRE(a.load_file(model.c_str()).ok());
    CHECK_FALSE(a.checksum_trusted());
    REQUIRE(b.load_file(model.c_str()).ok());
    CHECK_FALSE(b.checksum_trusted());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  {
    host::LoadedModel a, b;
    REQUIRE(a.load_file(model.c_str()).ok());
    CHECK_FALSE(a.checksum_trusted());  // verified now, and recorded
    REQUIRE(b.load_file(model.c_str()).ok());
    CHECK(b.checksum_trusted());
    host::LoadedModel c;  // read into memory instead of mapped: the same file, the same record
    REQUIRE(c.load_file(model.c_str(), false).ok());
    CHECK(c.checksum_trusted());
  }
  {  // the record switched off: always the full check
    setenv("QTF_VERIFIED_FILES", "off", 1);
    host::LoadedModel a;
    REQUIRE(a.load_file(model.c_str()).ok());
    CHECK_FALSE(a.checksum_trusted());
    setenv("QTF_VERIFIED_FILES", record.path.c_str(), 1);
  }
  {  // one weight byte flipped in place (same inode, same size): its times change, so the CRC runs and fails
    std::vector<char> b = read_all(model);
    const off_t at = (off_t)b.size() - 5;
    const char flipped = (char)(b[(size_t)at] ^ 0x40);
    int fd = open(model.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, &flipped, 1, at) == 1);
    close(fd);
    host::LoadedModel a;
    Status st = a.load_file(model.c_str());
    CHECK(st.code() == Err::bad_checksum);
    CHECK_FALSE(a.checksum_trusted());
  }
  {  // a damaged copy is a new file: checked, refused
    std::vector<char> b = read_all(fixture);
    b[b.size() - 5] ^= 0x40;
    const std::string damaged = scratch("damaged.qtf");
    write_all(damaged, b);
    host::LoadedModel a;
    CHECK(a.load_file(damaged.c_str()).code() == Err::bad_checksum);
    std::remove(damaged.c_str());
  }
  std::remove(model.c_str());
}

TEST_CASE("the record of verified files: a changed identity or checksum is not trusted, a recent file not recorded") {
  RecordFile record;
  host::FileId id;
  id.dev = 1, id.ino = 2, id.size = 3, id.mtime_ns = 1000000000, id.ctime_ns = 1000000000, id.valid = true;
  CHECK_FALSE(host::verified_before(id, 0xABCD));
  host::remember_verified(id, 0xABCD);
  CHECK(host::verified_before(id, 0xABCD));
  CHECK_FALSE(host::verified_before(id, 0xABCE));
  host::FileId other = id;
  other.ctime_ns += 1;
  CHECK_FALSE(host::verified_before(other, 0xABCD));
  other = id;
  other.size += 1;
  CHECK_FALSE(host::verified_before(other, 0xABCD));
  host::FileId invalid = id;
  invalid.valid = false;
  CHECK_FALSE(host::verified_before(invalid, 0xABCD));
  host::FileId recent = id;
  recent.ino = 9;
  recent.ctime_ns = (int64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  host::remember_verified(recent, 0x1234);
  CHECK_FALSE(host::verified_before(recent, 0x1234));
  for (uint64_t i = 0; i < 70; ++i) {  // at most 64 records: the oldest go
    host::FileId f = id;
    f.ino = 100 + i;
    host::remember_verified(f, 1);
  }
  CHECK_FALSE(host::verified_before(id, 0xABCD));
  host::FileId last = id;
  last.ino = 169;
  CHECK(host::verified_before(last, 1));
  std::FILE* garbage = std::fopen(record.path.c_str(), "w");  // a damaged record is no record
  REQUIRE(garbage != nullptr);
  std::fputs("not a record\n1 2 3 4 5 6\n", garbage);
  std::fclose(garbage);
  CHECK_FALSE(host::verified_before(last, 1));
}
