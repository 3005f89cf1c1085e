#include "host/session.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace qtf::host {

AlignedBuffer::~AlignedBuffer() { std::free(raw_); }

Status AlignedBuffer::allocate(size_t bytes) {
  std::free(raw_);
  raw_ = data_ = nullptr;
  size_ = 0;
  if (bytes > SIZE_MAX - 64) return Status::error(Err::no_memory, "cannot allocate %zu bytes", bytes);
  raw_ = std::calloc(1, bytes + 64);  // no aligned calloc in C++17: 64 bytes more, rounded up below
  if (raw_ == nullptr) return Status::error(Err::no_memory, "cannot allocate %zu bytes", bytes);
  data_ = static_cast<uint8_t*>(raw_) + (64 - reinterpret_cast<uintptr_t>(raw_) % 64) % 64;
  size_ = bytes;
  return Status::success();
}

Status LoadedModel::load_file(const char* path, bool mmap) {
  QTF_TRY(bytes_.open(path, mmap));
  // The whole-file checksum once per file (host/verified.h): these very bytes verified before are trusted.
  uint32_t stored = 0;
  checksum_trusted_ = format::ModelFile::stored_checksum(bytes_.data(), bytes_.size(), &stored) &&
                      verified_before(bytes_.id(), stored);
  format::ModelFile f;
  Status st = f.open(bytes_.data(), bytes_.size(),
                     checksum_trusted_ ? format::Checksum::trust_stored : format::Checksum::verify);
  if (st.ok() && !checksum_trusted_) remember_verified(bytes_.id(), f.checksum());
  if (st.ok()) st = bind(f);
  if (!st.ok()) return Status::error(st.code(), "%s: %s", path, st.message());
  return st;
}

Status LoadedModel::load_any(const char* path, bool mmap, const import::Options& opt) {
  if (path == nullptr) return Status::error(Err::invalid_argument, "model path is null");
  QTF_TRY(import::check_options(path, opt));
  const import::Source src = import::detect(path);
  source_ = import::Source::qtf;
  checksum_trusted_ = false;
  if (src == import::Source::qtf && opt.tokenizer_path == nullptr) return load_file(path, mmap);
  // Converted once, straight into a 64-byte aligned image (the kernels read tensors in place) that the
  // model then uses as it is, already opened by the verifier.
  format::ModelFile opened;
  QTF_TRY(import::to_qtf(path, opt, &image_, &opened));
  Status st = bind(opened);
  if (!st.ok()) return Status::error(st.code(), "%s (converted from %s): %s", path, import::source_name(src), st.message());
  source_ = src;
  return st;
}

Status LoadedModel::load_memory(const void* data, size_t size) {
  if (data == nullptr || size == 0) return Status::error(Err::invalid_argument, "model buffer is null or empty");
  checksum_trusted_ = false;
  if (reinterpret_cast<uintptr_t>(data) % 64 != 0) {
    QTF_TRY(copy_.allocate(size));
    std::memcpy(copy_.data(), data, size);
    data = copy_.data();
  }
  return bind(data, size);
}

Status LoadedModel::bind(const void* data, size_t size) {
  format::ModelFile f;
  QTF_TRY(f.open(data, size));
  return bind(f);
}

Status LoadedModel::bind(const format::ModelFile& opened) {
  file_ = opened;
  QTF_TRY(convert_.allocate(model_.convert_bytes(file_)));
  QTF_TRY(model_.load(file_, convert_.data(), convert_.size()));
  size_t tok = Tokenizer::arena_bytes(file_, model_.cfg.vocab);
  if (tok == 0) {  // arena_bytes only fails when init would: get its message
    return tokenizer_.init(file_, model_.cfg.vocab, nullptr, 0);
  }
  QTF_TRY(tokenizer_arena_.allocate(tok));
  return tokenizer_.init(file_, model_.cfg.vocab, tokenizer_arena_.data(), tokenizer_arena_.size());
}

Status LoadedModel::apply_adapter_file(const char* path, bool mmap) {
  if (!file_.is_open()) return Status::error(Err::invalid_argument, "load a model before its adapter");
  if (adapter_file_.is_open()) return Status::error(Err::invalid_argument, "an adapter is already applied");
  QTF_TRY(adapter_bytes_.open(path, mmap));
  Status st = adapter_file_.open(adapter_bytes_.data(), adapter_bytes_.size());
  if (st.ok()) st = model_.apply_adapter(adapter_file_);
  if (!st.ok()) {
    adapter_file_ = format::ModelFile();
    adapter_bytes_.close();
    return Status::error(st.code(), "%s: %s", path, st.message());
  }
  return st;
}

Status tokenize(const Tokenizer& t, const char* text, size_t len, const EncodeOptions& opt, std::vector<int32_t>* ids,
                int* skipped) {
  if (len > ((size_t)INT32_MAX - 8) / 3) return Status::error(Err::invalid_argument, "text of %zu bytes is too long to encode", len);
  std::vector<char> work(t.work_bytes(len));
  EncodeOptions o = opt;
  o.work = work.data();
  o.work_bytes = work.size();
  ids->resize(Tokenizer::max_tokens(len));
  int n = 0;
  Status st = t.encode(text, len, ids->data(), (int)ids->size(), &n, skipped, o);
  ids->resize(st.ok() ? (size_t)n : 0);
  return st;
}

Status HostContext::init(const LoadedModel& m, const ContextOptions& opt) {
  QTF_TRY(validate_options(m.model(), opt));
  QTF_TRY(arena_.allocate(Context::arena_bytes(m.model(), opt)));
  QTF_TRY(ctx_.init(&m.model(), opt, arena_.data(), arena_.size(), /*arena_is_zero=*/true));
  QTF_TRY(pool_.start(opt.n_threads));
  return ctx_.set_workers(pool_.workers());
}

Status HostSampler::init(int vocab, const SamplerOptions& opt) {
  QTF_TRY(arena_.allocate(Sampler::arena_bytes(vocab, opt)));
  return sampler_.init(vocab, opt, arena_.data(), arena_.size());
}

}  // namespace qtf::host
