// Every .qtf file the tests sweep over: the committed fixtures and the shipped models, sorted.
#pragma once
#include <dirent.h>

#include <algorithm>
#include <string>
#include <vector>

namespace qtf::test {

inline std::vector<std::string> fixture_and_shipped_models() {
  std::vector<std::string> out;
  for (const char* dir : {"/tests/fixtures", "/models"}) {
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
