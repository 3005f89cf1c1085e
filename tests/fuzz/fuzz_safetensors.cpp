// Fuzzes the safetensors reader (engine/import/safetensors): any bytes in as a whole file. After a
// successful parse every tensor's bytes are touched at both ends and the F32/F16/BF16 ones converted,
// so a bad bound shows as a sanitizer report; the answer to bad input must be one error line.
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "import/safetensors.h"

using namespace qtf;

namespace {
volatile uint8_t g_sink;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<import::StTensor> ts;
  Status s = import::parse_safetensors(data, size, "fuzz.safetensors", &ts);
  if (!s.ok()) {
    fuzz::check(ts.size() < size + 1 && std::strlen(s.message()) > 0);
    return 0;
  }
  std::vector<float> f32;
  for (const import::StTensor& t : ts) {
    fuzz::check(t.data >= data && t.bytes <= size && t.data + t.bytes <= data + size);
    if (t.bytes) {
      g_sink = t.data[0];
      g_sink = t.data[t.bytes - 1];
    }
    if (t.elements > (1u << 20)) continue;  // converting is linear; keep each run fast
    f32.resize((size_t)t.elements + 1);
    Status c = import::st_to_f32(t, f32.data());
    fuzz::check(c.ok() == (t.type != import::StType::other));
  }
  return 0;
}
