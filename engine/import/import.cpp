#include "import/import.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "format/format.h"
#include "host/file.h"
#include "import/common.h"
#include "import/gguf.h"
#include "import/hf.h"
#include "import/llama2c.h"

namespace qtf::import {
namespace {

bool is_directory(const char* path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// The first bytes of a regular file (fewer when it is shorter); false when it cannot be read.
bool read_head(const char* path, uint8_t* head, size_t cap, size_t* n) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // O_NONBLOCK: a FIFO must not hang detection
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return false;
  }
  size_t got = 0;
  while (got < cap) {
    ssize_t r = ::read(fd, head + got, cap - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  ::close(fd);
  *n = got;
  return true;
}

Status with_path(const char* path, Status st) {
  if (st.ok()) return st;
  return Status::error(st.code(), "%s: %s", path, st.message());
}

}  // namespace

const char* source_name(Source s) {
  switch (s) {
    case Source::qtf: return "qtf";
    case Source::gguf: return "GGUF";
    case Source::hf_dir: return "Hugging Face directory";
    case Source::llama2c: return "llama2.c checkpoint";
    case Source::unknown: break;
  }
  return "unknown";
}

Source detect(const char* path) {
  if (path == nullptr) return Source::unknown;
  if (is_directory(path)) {
    const std::string config = std::string(path) + "/config.json";
    struct stat st;
    return stat(config.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? Source::hf_dir : Source::unknown;
  }
  uint8_t head[256];
  size_t n = 0;
  if (!read_head(path, head, sizeof head, &n)) return Source::unknown;
  if (n >= 8 && std::memcmp(head, format::kMagic, 8) == 0) return Source::qtf;
  if (n >= 4 && std::memcmp(head, "GGUF", 4) == 0) return Source::gguf;
  if (llama2c_header_plausible(head, n)) return Source::llama2c;
  return Source::unknown;
}

Status to_qtf(const char* path, const Options& opt, std::vector<uint8_t>* out) {
  if (out == nullptr) return Status::error(Err::invalid_argument, "import: null argument");
  format::Image image;
  return to_vector(to_qtf(path, opt, &image), image, out);
}

Status check_options(const char* path, const Options& opt) {
  if (opt.gguf_dequantize_f32 && opt.gguf_requantize_q4)
    return Status::error(Err::invalid_argument, "%s: a GGUF's matrices are either dequantized to f32 or requantized to "
                         "q4, not both (--gguf-f32, --gguf-q4)", path);
  return Status::success();
}

Status to_qtf(const char* path, const Options& opt, format::Image* image, format::ModelFile* opened) {
  if (path == nullptr || image == nullptr) return Status::error(Err::invalid_argument, "import: null argument");
  image->clear();
  QTF_TRY(check_options(path, opt));
  Output out;
  out.image = image;
  out.file = opened;
  const Source src = detect(path);
  if (src == Source::hf_dir) {
    if (opt.tokenizer_path)
      return Status::error(Err::invalid_argument, "%s: a tokenizer file is only taken with a llama2.c checkpoint (this is %s)",
                           path, source_name(src));
    return with_path(path, hf_dir_to_qtf(path, out));  // drops the mapped safetensors' pages itself
  }
  if (src == Source::unknown) {
    if (is_directory(path))
      return Status::error(Err::io, "%s: a directory without config.json (not a Hugging Face model)", path);
    host::FileBytes probe;  // its message says why a file cannot be read (missing, FIFO, empty)
    QTF_TRY(probe.open(path, true));
    return Status::error(Err::bad_magic,
                         "%s: not a model qtf reads: no .qtf (QTFMODEL) or GGUF magic, not a llama2.c checkpoint "
                         "header, not a Hugging Face directory",
                         path);
  }
  if (opt.tokenizer_path && src != Source::llama2c)
    return Status::error(Err::invalid_argument, "%s: a tokenizer file is only taken with a llama2.c checkpoint (this is %s)",
                         path, source_name(src));
  host::FileBytes bytes;
  QTF_TRY(bytes.open(path, true));
  out.drop_source_pages = bytes.mapped();
  out.dequantize_f32 = opt.gguf_dequantize_f32;
  out.requantize_q4 = opt.gguf_requantize_q4;
  const std::string name = base_name(path);
  switch (src) {
    case Source::qtf: {
      QTF_TRY(image->allocate(bytes.size()));
      std::memcpy(image->data(), bytes.data(), bytes.size());
      format::ModelFile f;
      Status st = f.open(image->data(), image->size());
      if (!st.ok()) image->clear();
      else if (opened) *opened = f;
      return with_path(path, st);
    }
    case Source::gguf: return with_path(path, gguf_to_qtf(bytes.data(), bytes.size(), name.c_str(), out));
    case Source::llama2c: {
      host::FileBytes tok;
      if (opt.tokenizer_path) QTF_TRY(tok.open(opt.tokenizer_path, true));
      const std::string tok_name = opt.tokenizer_path ? base_name(opt.tokenizer_path) : std::string();
      Status st = llama2c_to_qtf(bytes.data(), bytes.size(), opt.tokenizer_path ? tok.data() : nullptr, tok.size(),
                                 name.c_str(), out, tok_name.c_str());
      return with_path(path, st);
    }
    default: break;
  }
  return Status::error(Err::unsupported, "%s: %s is not supported", path, source_name(src));
}

}  // namespace qtf::import
