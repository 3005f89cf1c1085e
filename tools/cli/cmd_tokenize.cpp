// qtf tokenize: a model's tokenizer on a text, as llama.cpp's llama-tokenize prints it.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "host/file.h"
#include "options.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf tokenize -m MODEL [options] TEXT\n"
    "  Prints each token of TEXT as `id -> 'piece'` (the text it stands for, escaped), one a line.\n"
    "  --ids             print only the ids, as [1, 2, 3]\n"
    "  --no-bos          no BOS even when the model's tokenizer adds one (tokenizer.add_bos)\n"
    "  --parse-special   control tokens spelled in TEXT (<s>, <|endoftext|>) become those tokens\n"
    "  -f, --file FILE   tokenize the file's bytes instead of TEXT\n";

void print_piece(const format::Str& s) {
  std::putchar('\'');
  for (uint32_t i = 0; i < s.size; ++i) {
    const unsigned char c = (unsigned char)s.data[i];
    if (c == '\n') std::printf("\\n");
    else if (c == '\t') std::printf("\\t");
    else if (c == '\'' || c == '\\') std::printf("\\%c", c);
    else if (c < 0x20 || c == 0x7f) std::printf("\\x%02x", c);
    else std::putchar(c);
  }
  std::putchar('\'');
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  ModelOptions mo;
  bool ids_only = false, bos = true, parse_special = false;
  const char* text = nullptr;
  const char* file = nullptr;
  const int parsed = parse_options(argc, argv, "tokenize", kUsage, &mo, [&](Args& a) {
    if (a.is("--ids")) ids_only = true;
    else if (a.is("--no-bos")) bos = false;
    else if (a.is("--parse-special")) parse_special = true;
    else if (a.is("-f", "--file")) return a.value(&file) ? kParsed : kBadValue;
    else if (a.flag()[0] != '-' && !text) text = a.flag();
    else return kUnknown;
    return kParsed;
  });
  if (parsed != kConsumed) return parsed;
  if (!text && !file) {
    std::fprintf(stderr, "qtf tokenize: no text given\n%s", kUsage);
    return 2;
  }
  host::LoadedModel lm;
  if (!load_model(mo, &lm)) return 1;
  host::FileBytes bytes;
  std::string input;
  if (file) {
    const Status st = bytes.open(file, false);
    if (!st.ok()) {
      std::fprintf(stderr, "qtf tokenize: %s\n", st.message());
      return 1;
    }
    input.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  } else {
    input = text;
  }
  const Tokenizer& tok = lm.tokenizer();
  EncodeOptions opt;
  opt.add_special = bos;
  opt.parse_special = parse_special;
  std::vector<int32_t> ids;
  int skipped = 0;
  const Status st = host::tokenize(tok, input.data(), input.size(), opt, &ids, &skipped);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf tokenize: %s\n", st.message());
    return 1;
  }
  if (skipped) std::fprintf(stderr, "qtf tokenize: warning: %d byte(s) have no token in this vocabulary and were skipped\n", skipped);
  if (ids_only) {
    std::printf("[");
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? ", " : "", ids[i]);
    std::printf("]\n");
    return 0;
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    std::printf("%6d -> ", ids[i]);
    const TokenType type = tok.token_type(ids[i]);
    // Special tokens show their spelling (they stand for no text); others the text they decode to.
    print_piece(type == TokenType::control || type == TokenType::unknown || type == TokenType::unused ? tok.token_piece(ids[i])
                                                                                                       : tok.token_text(ids[i]));
    std::printf("\n");
  }
  return 0;
}

}  // namespace qtf::cli
