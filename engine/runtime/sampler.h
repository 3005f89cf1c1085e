// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded RNG
// (same seed and logits, same token on every platform). Sized once; sample() never allocates.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace qtf {

// The sampler's random generator. splitmix64 (the default); runc: llama2.c run.c's xorshift*
// (random_u32: x ^= x >> 12, x ^= x << 25, x ^= x >> 27, (x * 0x2545F4914F6CDD1D) >> 32; random_f32: the
// top 24 bits / 2^24; the state starts at the seed), so that a seed gives run.c's sample of the same
// logits (docs/llama.md, "stories260K with tok512 against run.c").
enum class Rng : uint8_t { splitmix64 = 0, runc = 1 };

struct SamplerOptions {
  float temperature = 0.8f;  // <= 0: greedy
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  float min_p = 0.05f;       // 0: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp convention: divide positive logits, multiply negative)
  int repeat_last_n = 64;
  uint64_t seed = 0x5eed;
  Rng rng = Rng::splitmix64;
};

// The index of the first logit that is NaN or +-Inf, or -1 when all are finite. A model with damaged
// weights computes such logits, and a sampler would still pick a token from them (every NaN counts as
// -inf): callers check first and stop with an error. One pass over the vocabulary, no allocation.
int first_nonfinite(const float* logits, int vocab);
// That check as a Status: Err::bad_value naming the logit, or success.
Status check_logits(const float* logits, int vocab);

class Sampler {
 public:
  static size_t arena_bytes(int vocab, const SamplerOptions& opt);
  Status init(int vocab, const SamplerOptions& opt, void* arena, size_t arena_len);
  int sample(const float* logits);  // logits are not modified
  void accept(int token);           // remember for the repetition penalty
  void reset();                     // forget history and restart the RNG from the seed
  // Switches the generator (Rng) and restarts it from the seed; history is kept. False for an unknown one.
  bool set_rng(Rng rng);
  // The next number of the generator in [0, 1) (public for tests: the generator's sequence is part of
  // the contract, same seed same text).
  float uniform();

 private:
  struct Candidate {
    int id;
    float logit;
  };
  SamplerOptions opt_;
  int vocab_ = 0;
  Candidate* cand_ = nullptr;  // [vocab]
  int32_t* recent_ = nullptr;  // ring of the last repeat_last_n tokens
  int n_recent_ = 0, recent_at_ = 0;
  uint64_t rng_ = 0;
};

}  // namespace qtf
