// The engine side of `qtf serve`: a fixed pool of slots (one context each, sized at start-up) over one
// read-only model, and a generation loop with stop sequences and streaming-safe text pieces.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "energy/energy.h"
#include "host/session.h"

namespace qtf::serve {

// Per-pass statistics summed over a request (or over the server's life, in Metrics).
struct PassCounters {
  int64_t passes = 0, flops = 0, qsim_flops = 0, circuits = 0;
  double energy_j = 0, co2_g = 0;
  std::map<std::pair<int, int>, int64_t> layer_rank;   // (layer, rank) -> token-layers
  std::vector<int64_t> layer_quantum, layer_classical;  // per layer: token-layers on each route
  void add(const TokenStats& s, const energy::TokenCost& c);
  void merge(const PassCounters& o);
};

struct GenRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 128;
  SamplerOptions sampler;
  std::vector<std::string> stop;
  // OpenAI's penalties on tokens already generated: logit -= count * frequency + (count > 0) * presence.
  float presence_penalty = 0, frequency_penalty = 0;
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits before sampling
  int logprobs = -1;  // -1: none; else each token's log probability and this many alternatives
  int eos = -1;       // the model's end-of-sequence token: generation ends there (not part of the text)
};

// A generated token's log probability (of the distribution after bias and penalties, before temperature
// and truncation), with the most likely alternatives.
struct TokenLogprob {
  int32_t id = 0;
  size_t offset = 0;  // where its text starts in the generated text
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

struct GenResult {
  std::string text;                 // the generated text (without a matched stop sequence)
  const char* finish = "length";    // "length" or "stop" (OpenAI's finish_reason)
  int prompt_tokens = 0, completion_tokens = 0;
  double first_token_ms = 0, total_ms = 0;
  PassCounters counters;
  std::vector<TokenLogprob> tokens;  // when logprobs were asked for: the tokens of `text`
};

// A slot: one context (its memory allocated once, at server start) used by one request at a time.
struct Slot {
  host::HostContext ctx;
  int index = 0;
};

class SlotPool {
 public:
  // n slots over the model; at most max_waiting requests wait for a free slot.
  Status init(const host::LoadedModel& m, const ContextOptions& opt, int n, int max_waiting);
  // Takes a free slot, waiting up to `timeout` for one. Null when the wait queue is full (*queue_full =
  // true) or the wait timed out.
  Slot* acquire(std::chrono::milliseconds timeout, bool* queue_full);
  void release(Slot* s);
  int size() const { return (int)slots_.size(); }
  int busy() const;
  int waiting() const;

 private:
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Slot*> free_;
  int waiting_ = 0, max_waiting_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
};

// Releases its slot on destruction.
struct SlotLease {
  SlotPool* pool = nullptr;
  Slot* slot = nullptr;
  SlotLease(SlotPool* p, Slot* s) : pool(p), slot(s) {}
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  ~SlotLease() {
    if (slot) pool->release(slot);
  }
};

// Receives text as it becomes final (never a partial UTF-8 sequence or a possible start of a stop
// sequence) and how many of GenResult::tokens begin within the text given so far. Returns false to stop
// (the client went away).
using OnText = std::function<bool(const std::string& piece, size_t tokens_ready)>;

struct Energy {
  const energy::Profiles* profiles;
  const energy::Profile* profile;
};

// Runs the prompt and generates up to max_tokens tokens (fewer at a stop sequence or a full context).
// Returns false with *err on an engine error or when on_text asked to stop.
bool generate(Slot& slot, const host::LoadedModel& m, const Energy& e, const GenRequest& req, const OnText& on_text,
              GenResult* out, std::string* err);

// The longest prefix of s[0..n) that does not end inside a UTF-8 sequence.
size_t utf8_complete(const std::string& s, size_t n);

}  // namespace qtf::serve
