// Every .qtf file the tests sweep over: the committed fixtures and the shipped models, sorted.
// QTF_TEST_MODELS=fixtures leaves the shipped models out: tools/cross/test_cross.sh sets it for the
// ctest runs under qemu-user (40-70x slower than native) and tools/sanitize.sh for ASan's; the fixtures
// cover every block option, and the shipped models run there in their own tests (greedy text).
#pragma once
#include <dirent.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace qtf::test {

inline bool fixtures_only() {
  const char* v = std::getenv("QTF_TEST_MODELS");
  return v != nullptr && std::strcmp(v, "fixtures") == 0;
}

inline std::vector<std::string> fixture_and_shipped_models() {
  std::vector<std::string> out;
  for (const char* dir : {"/tests/fixtures", "/models"}) {
    if (fixtures_only() && std::strcmp(dir, "/models") == 0) continue;
    const std::string path = std::string(QTF_SOURCE_DIR) + dir;
    DIR* d = opendir(path.c_str());
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 4 && name.compare(name.size() - 4, 4, ".qtf") == 0) out.push_back(path + "/" + name);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace qtf::test
