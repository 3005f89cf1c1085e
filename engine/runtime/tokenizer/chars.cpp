// The tokenizers without merges: `char` (one token per UTF-8 character) and `byte` (one per byte).
#include "runtime/tokenizer/internal.h"

namespace qtf {

void TokenizerAlgo::chars(const Tokenizer& t, const char* s, size_t n, tok::Emit* e) {
  for (size_t i = 0; i < n;) {
    if (t.kind_ == TokenizerKind::bytes) {
      const int id = t.byte_id_[(uint8_t)s[i]];
      if (id >= 0) e->push(id);
      else e->unknown(t.unk_, 1);
      ++i;
      continue;
    }
    const size_t step = tok::utf8_char(s + i, n - i);
    const int id = step ? t.lookup(s + i, step) : -1;
    if (id >= 0) e->push(id);
    else e->unknown(t.unk_, step ? step : 1);  // an invalid byte, or a character outside the vocabulary
    i += step ? step : 1;
  }
}

}  // namespace qtf
