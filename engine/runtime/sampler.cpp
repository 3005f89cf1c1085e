#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace qtf {

size_t Sampler::arena_bytes(int vocab, const SamplerOptions& opt) {
  size_t cand = ((size_t)vocab * sizeof(Candidate) + 15) / 16 * 16;
  return cand + (size_t)(opt.repeat_last_n > 0 ? opt.repeat_last_n : 1) * sizeof(int32_t);
}

Status Sampler::init(int vocab, const SamplerOptions& opt, void* arena, size_t arena_len) {
  if (vocab < 1) return Status::error(Err::invalid_argument, "vocabulary is empty");
  if (!(std::isfinite(opt.temperature) && opt.top_k >= 0 && opt.top_p > 0 && opt.top_p <= 1 && opt.min_p >= 0 &&
        opt.min_p < 1 && opt.repeat_penalty > 0 && opt.repeat_last_n >= 0 &&
        (opt.rng == Rng::splitmix64 || opt.rng == Rng::runc)))
    return Status::error(Err::invalid_argument,
                         "sampler options out of range (top_p in (0,1], min_p in [0,1), repeat_penalty > 0, rng "
                         "splitmix64 or runc)");
  if (arena == nullptr || arena_len < arena_bytes(vocab, opt) || reinterpret_cast<uintptr_t>(arena) % 16 != 0)
    return Status::error(Err::no_memory, "sampler arena too small or misaligned (needs %lu bytes)",
                         (unsigned long)arena_bytes(vocab, opt));
  opt_ = opt;
  vocab_ = vocab;
  cand_ = static_cast<Candidate*>(arena);
  recent_ = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(arena) + ((size_t)vocab * sizeof(Candidate) + 15) / 16 * 16);
  reset();
  return Status::success();
}

void Sampler::reset() {
  n_recent_ = recent_at_ = 0;
  // Seed 0 would stop xorshift* at 0 for good (run.c itself never uses it: it takes the time instead).
  rng_ = opt_.seed ? opt_.seed : 0x9E3779B97F4A7C15ull;
}

bool Sampler::set_rng(Rng rng) {
  if (rng != Rng::splitmix64 && rng != Rng::runc) return false;
  opt_.rng = rng;
  rng_ = opt_.seed ? opt_.seed : 0x9E3779B97F4A7C15ull;
  return true;
}

void Sampler::accept(int token) {
  if (opt_.repeat_last_n <= 0) return;
  recent_[recent_at_] = token;
  recent_at_ = (recent_at_ + 1) % opt_.repeat_last_n;
  if (n_recent_ < opt_.repeat_last_n) ++n_recent_;
}

float Sampler::uniform() {
  if (opt_.rng == Rng::runc) {  // run.c's random_u32 (xorshift*) and random_f32
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    const uint32_t u = (uint32_t)((rng_ * 0x2545F4914F6CDD1Dull) >> 32);
    return (float)(u >> 8) / 16777216.0f;
  }
  // splitmix64: portable and reproducible
  uint64_t z = (rng_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) / 16777216.0f;
}

int first_nonfinite(const float* logits, int vocab) {
  for (int i = 0; i < vocab; ++i)
    if (!std::isfinite(logits[i])) return i;
  return -1;
}

Status check_logits(const float* logits, int vocab) {
  const int i = first_nonfinite(logits, vocab);
  if (i < 0) return Status::success();
  return Status::error(Err::bad_value, "the model computed a non-finite logit (%s for token %d): its weights hold "
                       "NaN/Inf or overflow; check the file with qtf verify --deep", std::isnan(logits[i]) ? "NaN" : "Inf", i);
}

int Sampler::sample(const float* logits) {
  int n = vocab_;
  for (int i = 0; i < n; ++i) cand_[i] = {i, std::isnan(logits[i]) ? -INFINITY : logits[i]};
  if (opt_.repeat_penalty != 1.0f)
    for (int k = 0; k < n_recent_; ++k) {
      int id = recent_[k];
      if (id < 0 || id >= n) continue;
      float& l = cand_[id].logit;  // each id penalised once even if repeated
      bool seen = false;
      for (int j = 0; j < k; ++j) seen |= recent_[j] == id;
      if (!seen) l = l > 0 ? l / opt_.repeat_penalty : l * opt_.repeat_penalty;
    }
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (opt_.temperature <= 0) return std::min_element(cand_, cand_ + n, by_logit)->id;  // greedy

  if (opt_.top_k > 0 && opt_.top_k < n) {
    std::partial_sort(cand_, cand_ + opt_.top_k, cand_ + n, by_logit);
    n = opt_.top_k;
  } else {
    std::sort(cand_, cand_ + n, by_logit);
  }
  // Softmax at the temperature, in place (logit becomes probability).
  const float top = cand_[0].logit;
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += (cand_[i].logit = std::exp((cand_[i].logit - top) / opt_.temperature));
  for (int i = 0; i < n; ++i) cand_[i].logit /= sum;
  if (opt_.top_p < 1.0f) {  // smallest prefix with mass >= top_p
    float mass = 0;
    for (int i = 0; i < n; ++i) {
      mass += cand_[i].logit;
      if (mass >= opt_.top_p) { n = i + 1; break; }
    }
  }
  if (opt_.min_p > 0) {  // drop tokens below min_p times the best probability
    const float floor_p = opt_.min_p * cand_[0].logit;
    int keep = 1;
    while (keep < n && cand_[keep].logit >= floor_p) ++keep;
    n = keep;
  }
  float mass = 0;
  for (int i = 0; i < n; ++i) mass += cand_[i].logit;
  float r = uniform() * mass;
  for (int i = 0; i < n; ++i) {
    r -= cand_[i].logit;
    if (r < 0) return cand_[i].id;
  }
  return cand_[n - 1].id;
}

}  // namespace qtf
