#include "host/verified.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "host/file.h"

namespace qtf::host {

namespace {

constexpr int kMaxRecords = 64;
constexpr int64_t kRacyNs = 2000000000;  // a file changed this recently may still be changing
const char kHeader[] = "qtf verified files v1\n";

struct Record {
  FileId id;
  uint32_t crc = 0;
};

// The record's path; empty when off or when no cache folder is known. *dirs: folders to create first.
std::string record_path(std::vector<std::string>* dirs) {
  if (const char* p = std::getenv("QTF_VERIFIED_FILES")) return std::strcmp(p, "off") == 0 ? std::string() : p;
  std::string base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && x[0] == '/') {
    base = x;
  } else if (const char* h = std::getenv("HOME"); h != nullptr && h[0] == '/') {
    base = std::string(h) + "/.cache";
    if (dirs) dirs->push_back(base);
  } else {
    return std::string();
  }
  if (dirs) dirs->push_back(base + "/qtf");
  return base + "/qtf/verified-files";
}

std::vector<Record> read_records(const std::string& path) {
  std::vector<Record> out;
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return out;
  char line[256];
  if (std::fgets(line, sizeof line, f) != nullptr && std::strcmp(line, kHeader) == 0) {
    while ((int)out.size() < kMaxRecords && std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long long dev, ino, size;
      long long mt, ct;
      unsigned crc;
      if (std::sscanf(line, "%llu %llu %llu %lld %lld %x", &dev, &ino, &size, &mt, &ct, &crc) != 6) continue;
      Record r;
      r.id.dev = dev, r.id.ino = ino, r.id.size = size, r.id.mtime_ns = mt, r.id.ctime_ns = ct, r.id.valid = true;
      r.crc = crc;
      out.push_back(r);
    }
  }
  std::fclose(f);
  return out;
}

bool same_file(const FileId& a, const FileId& b) {
  return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime_ns == b.mtime_ns && a.ctime_ns == b.ctime_ns;
}

}  // namespace

bool verified_before(const FileId& id, uint32_t crc) {
  if (!id.valid) return false;
  const std::string path = record_path(nullptr);
  if (path.empty()) return false;
  for (const Record& r : read_records(path))
    if (same_file(r.id, id) && r.crc == crc) return true;
  return false;
}

void remember_verified(const FileId& id, uint32_t crc) {
  if (!id.valid) return;
  timespec now;
  if (clock_gettime(CLOCK_REALTIME, &now) != 0) return;
  const int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
  if (id.mtime_ns > now_ns - kRacyNs || id.ctime_ns > now_ns - kRacyNs) return;
  std::vector<std::string> dirs;
  const std::string path = record_path(&dirs);
  if (path.empty()) return;
  std::vector<Record> records;
  for (const Record& r : read_records(path))
    if (!(r.id.dev == id.dev && r.id.ino == id.ino)) records.push_back(r);  // the file's older record goes
  if ((int)records.size() >= kMaxRecords) records.erase(records.begin(), records.end() - (kMaxRecords - 1));
  records.push_back(Record{id, crc});
  std::string text = kHeader;
  char line[160];
  for (const Record& r : records) {
    std::snprintf(line, sizeof line, "%llu %llu %llu %lld %lld %08x\n", (unsigned long long)r.id.dev,
                  (unsigned long long)r.id.ino, (unsigned long long)r.id.size, (long long)r.id.mtime_ns,
                  (long long)r.id.ctime_ns, (unsigned)r.crc);
    text += line;
  }
  for (const std::string& d : dirs) mkdir(d.c_str(), 0700);  // EEXIST is fine; a failure shows below
  (void)write_file_atomic(path.c_str(), text.data(), text.size());  // a cache: failing to write costs time only
}

}  // namespace qtf::host
