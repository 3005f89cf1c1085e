// Fuzzes the GGUF importer (engine/import/gguf.cpp): any bytes in. A file it accepts must come out as a
// .qtf image the reader verifies; binding it may fail (with a Status) but never crash. The tokenizer-only
// path is fuzzed on the same bytes.
#include <vector>

#include "format/reader.h"
#include "fuzz_util.h"
#include "host/session.h"
#include "import/gguf.h"

using namespace qtf;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> image;
  if (import::gguf_to_qtf(data, size, "fuzz.gguf", &image).ok()) {
    format::ModelFile f;
    fuzz::check(f.open(image.data(), image.size()).ok());
    host::LoadedModel m;
    (void)m.load_memory(image.data(), image.size());
  } else {
    fuzz::check(image.empty());
  }
  format::Writer w;
  int vocab = 0;
  if (import::gguf_tokenizer(data, size, &w, &vocab).ok()) fuzz::check(vocab >= 1 && vocab <= (1 << 20));
  return 0;
}
