// Fuzzes the importers' JSON reader (engine/import/json) and what reads its documents: any bytes in as
// a JSON text; every value of a parsed document is walked; the same text is then read as a Hugging Face
// config.json and, for an object, as a tokenizer.json (+ tokenizer_config) for a 300-token model. Bad
// input must give one error line, never a crash, a hang or an unbounded allocation.
#include <cstring>
#include <string_view>

#include "fuzz_util.h"
#include "import/hf.h"
#include "import/json.h"

using namespace qtf;

namespace {

volatile size_t g_sink;
volatile double g_num;

void walk(const json::Document& doc) {
  // Depth-first with an explicit stack (the reader allows depth 64).
  std::vector<json::Value> stack{doc.root()};
  size_t seen = 0;
  while (!stack.empty()) {
    json::Value v = stack.back();
    stack.pop_back();
    ++seen;
    g_sink = v.key().size() + v.str().size() + v.offset();
    int64_t i;
    (void)v.integer(&i);
    g_num = v.number();
    g_sink = v.boolean() ? 1 : 0;
    size_t n = 0;
    for (json::Value c = v.first(); c.exists(); c = c.next(), ++n) stack.push_back(c);
    fuzz::check(n == v.size());
    if (v.is(json::Type::object) && v.size()) fuzz::check(v.get(v.first().key()).exists());
  }
  fuzz::check(seen > 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  json::Document doc;
  json::Limits lim;
  lim.max_nodes = 1u << 16;
  Status s = doc.parse(text, size, "fuzz.json", lim);
  if (!s.ok()) {
    fuzz::check(!doc.root().exists() && std::strlen(s.message()) > 0);
    return 0;
  }
  walk(doc);
  import::HfConfig cfg;
  (void)import::hf_read_config(text, size, &cfg);
  if (doc.root().is(json::Type::object)) {
    import::HfConfig small;
    small.vocab = 300;
    format::Writer w;
    (void)import::hf_tokenizer_meta(doc.root(), doc.root(), doc.root(), small, &w);
  }
  return 0;
}
