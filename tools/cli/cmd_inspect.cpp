// qtf inspect / qtf verify: read-only views of a model file.
#include <cstdio>
#include <cstring>
#include <vector>

#include "commands.h"
#include "format/reader.h"
#include "host/file.h"
#include "host/session.h"
#include "import/import.h"

namespace qtf::cli {
namespace {

using format::MetaEntry;
using format::MetaType;
using format::Str;
using format::TensorInfo;

void print_json_string(const char* s, size_t n) {
  std::putchar('"');
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') std::printf("\\%c", c);
    else if (c == '\n') std::printf("\\n");
    else if (c == '\t') std::printf("\\t");
    else if (c < 0x20) std::printf("\\u%04x", c);
    else std::putchar(c);
  }
  std::putchar('"');
}

// Text form of a string for the table: control characters escaped, long strings shortened.
void print_text_string(const Str& s, size_t limit) {
  std::putchar('"');
  for (size_t i = 0; i < s.size && i < limit; ++i) {
    unsigned char c = (unsigned char)s.data[i];
    if (c == '\n') std::printf("\\n");
    else if (c < 0x20) std::printf("\\x%02x", c);
    else std::putchar(c);
  }
  std::printf(s.size > limit ? "\"..." : "\"");
}

void print_meta_value(const MetaEntry& e, bool json) {
  const uint32_t shown = json ? e.count : (e.count < 12 ? e.count : 12);
  int64_t i;
  double d;
  Str s;
  switch (e.type) {
    case MetaType::i64: e.as_i64(&i); std::printf("%lld", (long long)i); return;
    case MetaType::f64: e.as_f64(&d); std::printf("%.9g", d); return;
    case MetaType::str:
      e.as_str(&s);
      if (json) print_json_string(s.data, s.size);
      else print_text_string(s, 120);
      return;
    default: break;
  }
  std::printf("[");
  uint64_t cursor = 0;  // str[]: walked in order (str_at would walk from the start for each)
  for (uint32_t k = 0; k < shown; ++k) {
    if (k) std::printf(", ");
    if (e.type == MetaType::i64_array) { e.i64_at(k, &i); std::printf("%lld", (long long)i); }
    else if (e.type == MetaType::f64_array) { e.f64_at(k, &d); std::printf("%.9g", d); }
    else {
      e.next_str(&cursor, &s);
      if (json) print_json_string(s.data, s.size);
      else print_text_string(s, 24);
    }
  }
  if (shown < e.count) std::printf(", ... (%u items)", e.count);
  std::printf("]");
}

// A .qtf file mapped, or (image given) any format qtf imports, converted into *image in memory.
int open_model(const char* path, host::FileBytes* bytes, format::ModelFile* file,
               format::Image* image = nullptr) {
  const import::Source src = import::detect(path);
  Status st;
  if (image && src != import::Source::qtf && src != import::Source::unknown) {
    st = import::to_qtf(path, import::Options(), image, file);
    if (st.ok()) {
      std::fprintf(stderr, "qtf: converted %s (%s) in memory; `qtf convert %s OUT.qtf` makes a .qtf once\n", path,
                   import::source_name(src), path);
    }
  } else {
    st = bytes->open(path);
    if (st.ok()) st = file->open(bytes->data(), bytes->size());
  }
  if (!st.ok()) {
    std::fprintf(stderr, "qtf: %s: %s: %s\n", path, err_name(st.code()), st.message());
    return 1;
  }
  return 0;
}

}  // namespace

int cmd_inspect(int argc, char** argv) {
  const char* path = nullptr;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("usage: qtf inspect MODEL [--json]   (a .qtf, or a GGUF, llama2.c checkpoint or Hugging Face\n"
                  "       directory, shown as it converts)\n");
      return 0;
    } else if (!path) path = argv[i];
    else { std::fprintf(stderr, "qtf inspect: unexpected argument '%s'\n", argv[i]); return 2; }
  }
  if (!path) { std::fprintf(stderr, "usage: qtf inspect MODEL.qtf [--json]\n"); return 2; }
  host::FileBytes bytes;
  format::ModelFile file;
  format::Image image;
  if (int rc = open_model(path, &bytes, &file, &image)) return rc;

  uint64_t cur = 0, params = 0;
  MetaEntry e;
  TensorInfo t;
  if (json) {
    std::printf("{\"file\": ");
    print_json_string(path, std::strlen(path));
    std::printf(", \"size\": %llu, \"version\": %u, \"checksum\": \"%08x\", \"metadata\": {",
                (unsigned long long)file.file_size(), file.version(), file.checksum());
    for (bool first = true; file.next_meta(&cur, &e); first = false) {
      std::printf(first ? "" : ", ");
      print_json_string(e.key.data, e.key.size);
      std::printf(": ");
      print_meta_value(e, true);
    }
    std::printf("}, \"tensors\": [");
    cur = 0;
    for (bool first = true; file.next_tensor(&cur, &t); first = false) {
      std::printf(first ? "{\"name\": " : ", {\"name\": ");
      print_json_string(t.name.data, t.name.size);
      std::printf(", \"dtype\": \"%s\", \"shape\": [", format::dtype_name(t.dtype));
      for (int k = 0; k < t.ndim; ++k) std::printf(k ? ", %llu" : "%llu", (unsigned long long)t.dims[k]);
      std::printf("], \"offset\": %llu, \"size\": %llu}", (unsigned long long)t.offset, (unsigned long long)t.size);
      params += t.elements();
    }
    std::printf("], \"parameters\": %llu}\n", (unsigned long long)params);
    return 0;
  }
  std::printf("file      %s\nsize      %llu bytes (%s)\nversion   %u\nchecksum  %08x (verified)\n\n", path,
              (unsigned long long)file.file_size(), bytes.mapped() ? "mmap" : "read", file.version(),
              file.checksum());
  std::printf("metadata (%u entries)\n", file.meta_count());
  while (file.next_meta(&cur, &e)) {
    std::printf("  %-28.*s %-6s ", (int)e.key.size, e.key.data, format::meta_type_name(e.type));
    print_meta_value(e, false);
    std::printf("\n");
  }
  std::printf("\ntensors (%u)\n  %-32s %-5s %-20s %10s %10s\n", file.tensor_count(), "name", "dtype", "shape",
              "offset", "bytes");
  cur = 0;
  while (file.next_tensor(&cur, &t)) {
    char shape[64];
    int n = std::snprintf(shape, sizeof shape, "[");
    for (int k = 0; k < t.ndim && n < (int)sizeof shape; ++k)
      n += std::snprintf(shape + n, sizeof shape - n, k ? ",%llu" : "%llu", (unsigned long long)t.dims[k]);
    if (n < (int)sizeof shape) std::snprintf(shape + n, sizeof shape - n, "]");
    std::printf("  %-32.*s %-5s %-20s %10llu %10llu\n", (int)t.name.size, t.name.data, format::dtype_name(t.dtype),
                shape, (unsigned long long)t.offset, (unsigned long long)t.size);
    params += t.elements();
  }
  std::printf("\nparameters %llu\n", (unsigned long long)params);
  return 0;
}

int cmd_verify(int argc, char** argv) {
  const char kUsage[] =
      "usage: qtf verify [--deep] MODEL.qtf\n"
      "  checks the file format (bounds, checksum, names); --deep also scans every weight for NaN/Inf\n"
      "  and binds the model as the engine would (metadata agrees with tensors, tokenizer builds)\n";
  const char* path = nullptr;
  bool deep = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("%s", kUsage);
      return 0;
    }
    if (!std::strcmp(argv[i], "--deep")) deep = true;
    else if (!path) path = argv[i];
    else { std::fprintf(stderr, "qtf verify: unexpected argument '%s'\n%s", argv[i], kUsage); return 2; }
  }
  if (!path) { std::fprintf(stderr, "%s", kUsage); return 2; }
  host::FileBytes bytes;
  format::ModelFile file;
  if (int rc = open_model(path, &bytes, &file)) return rc;
  host::remember_verified(bytes.id(), file.checksum());  // the checksum was computed: later loads skip it
  if (deep) {
    uint64_t cur = 0, bad_tensors = 0, first = 0;
    TensorInfo t;
    while (file.next_tensor(&cur, &t)) {
      if (uint64_t bad = format::count_nonfinite(t, &first)) {
        std::fprintf(stderr, "qtf: %s: tensor '%.*s' has %llu non-finite values (NaN/Inf), the first at index %llu\n",
                     path, (int)t.name.size, t.name.data, (unsigned long long)bad, (unsigned long long)first);
        ++bad_tensors;
      }
    }
    if (bad_tensors) return 1;
    host::LoadedModel model;
    Status st = model.load_memory(bytes.data(), bytes.size());
    if (!st.ok()) {
      std::fprintf(stderr, "qtf: %s: does not bind as a model: %s: %s\n", path, err_name(st.code()), st.message());
      return 1;
    }
  }
  std::printf("%s: ok (format v%u, %llu bytes, %u tensors, checksum %08x%s)\n", path, file.version(),
              (unsigned long long)file.file_size(), file.tensor_count(), file.checksum(),
              deep ? "; deep: all weights finite, model binds" : "");
  return 0;
}

}  // namespace qtf::cli
