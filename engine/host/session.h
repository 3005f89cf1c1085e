// Host convenience layer: owns the memory the core asks for (model bytes, f16/i8 conversion buffer,
// tokenizer and context arenas), so that apps and tools load a model in one call. Allocation happens
// here, at load and context creation only; the core never allocates.
#pragma once
#include "host/file.h"
#include "host/pool.h"
#include "import/import.h"
#include "model/model.h"
#include "runtime/context.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer/tokenizer.h"

#include <vector>

namespace qtf::host {

// 64-byte aligned heap block, freed on destruction.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  // Zero-filled, 64-byte aligned. The zeros come from calloc: a large block is fresh pages from the OS,
  // so pages nobody touches (most of a long context's KV cache) are never faulted in.
  Status allocate(size_t bytes);
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* raw_ = nullptr;  // what calloc returned (data_ is raw_ rounded up to 64 bytes)
  void* data_ = nullptr;
  size_t size_ = 0;
};

class LoadedModel {
 public:
  // From a file: memory-mapped (mmap = true) or read into memory. The whole-file checksum is computed
  // once per file (host/verified.h): checksum_trusted() says this load relied on an earlier check.
  Status load_file(const char* path, bool mmap = true);
  bool checksum_trusted() const { return checksum_trusted_; }
  // From any format qtf reads (engine/import/import.h): a .qtf is loaded as load_file loads it; a GGUF,
  // llama2.c checkpoint or Hugging Face directory is converted into a .qtf image in memory, then verified
  // and bound as usual (converted() tells which). opt: a llama2.c checkpoint's tokenizer.bin, how GGUF's
  // quantized matrices are kept (import::Options).
  Status load_any(const char* path, bool mmap = true, const import::Options& opt = import::Options());
  // The format of the last load_any (qtf for the other loads) and whether it was converted in memory.
  import::Source source() const { return source_; }
  bool converted() const { return source_ != import::Source::qtf; }

  // From the caller's buffer, used in place: it must stay valid and unchanged while loaded.
  // (A buffer not 64-byte aligned is copied once into an aligned one.)
  Status load_memory(const void* data, size_t size);
  // A file the verifier has just opened (import::to_qtf's `opened`), used in place without opening it
  // again: its bytes must stay valid and unchanged while loaded.
  Status load_verified(const format::ModelFile& opened) { return bind(opened); }

  // Applies a LoRA adapter file (qtf.arch = lora, docs/qllm.md) to the loaded model: mapped (or read)
  // and bound in place; the base weights are neither copied nor changed. One adapter per LoadedModel;
  // create contexts after applying it.
  Status apply_adapter_file(const char* path, bool mmap = true);

  const Model& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  size_t file_size() const { return file_.file_size(); }
  const format::ModelFile& file() const { return file_; }  // its metadata (tokenizer keys, chat template)
  bool mapped() const { return bytes_.mapped(); }
  // Memory the model holds: its file bytes resident now (all of them when read, the touched pages when
  // mapped), and the heap it converted tensors into (0 when every tensor is used in place).
  size_t resident_file_bytes() const {
    return bytes_.data() ? bytes_.resident() : !image_.empty() ? image_.size() : copy_.size();
  }
  size_t converted_bytes() const { return convert_.size(); }

 private:
  Status bind(const void* data, size_t size);
  Status bind(const format::ModelFile& opened);  // a file the verifier has just opened
  FileBytes bytes_, adapter_bytes_;
  format::Image image_;  // a model converted in memory (load_any)
  AlignedBuffer copy_, convert_, tokenizer_arena_;
  format::ModelFile file_, adapter_file_;
  Model model_;
  Tokenizer tokenizer_;
  import::Source source_ = import::Source::qtf;
  bool checksum_trusted_ = false;
};

// Encodes text with a workspace and an output as large as the text can need (so the encoding is exact
// and never runs out of room): the host's one way to tokenize (qtf run/eval/tokenize, the server, the
// C API). add_special puts BOS first when the model's tokenizer says add_bos.
Status tokenize(const Tokenizer& t, const char* text, size_t len, const EncodeOptions& opt, std::vector<int32_t>* ids,
                int* skipped = nullptr);

class HostContext {
 public:
  Status init(const LoadedModel& m, const ContextOptions& opt);
  Context& ctx() { return ctx_; }
  const Context& ctx() const { return ctx_; }
  size_t arena_size() const { return arena_.size(); }
  uint64_t pool_jobs() const { return pool_.jobs(); }  // hand-offs to the workers so far (ThreadPool::jobs)

 private:
  AlignedBuffer arena_;
  Context ctx_;
  ThreadPool pool_;  // opt.n_threads - 1 workers (none for 1)
};

class HostSampler {
 public:
  Status init(int vocab, const SamplerOptions& opt);
  Sampler& get() { return sampler_; }

 private:
  AlignedBuffer arena_;
  Sampler sampler_;
};

}  // namespace qtf::host
