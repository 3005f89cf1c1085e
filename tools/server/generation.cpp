#include "generation.h"

#include <algorithm>
#include <cmath>

namespace qtf::serve {

void PassCounters::add(const TokenStats& s, const energy::TokenCost& c) {
  ++passes;
  flops += s.flops;
  qsim_flops += s.qsim_flops;
  circuits += s.circuits;
  energy_j += c.energy_j;
  co2_g += c.co2_g;
  if ((int)layer_quantum.size() < s.n_layers) {
    layer_quantum.resize(s.n_layers);
    layer_classical.resize(s.n_layers);
  }
  for (int l = 0; l < s.n_layers; ++l) {
    ++layer_rank[{l, (int)s.layer[l].rank}];
    ++(s.layer[l].quantum ? layer_quantum : layer_classical)[l];
  }
}

void PassCounters::merge(const PassCounters& o) {
  passes += o.passes;
  flops += o.flops;
  qsim_flops += o.qsim_flops;
  circuits += o.circuits;
  energy_j += o.energy_j;
  co2_g += o.co2_g;
  for (const auto& kv : o.layer_rank) layer_rank[kv.first] += kv.second;
  if (layer_quantum.size() < o.layer_quantum.size()) {
    layer_quantum.resize(o.layer_quantum.size());
    layer_classical.resize(o.layer_quantum.size());
  }
  for (size_t l = 0; l < o.layer_quantum.size(); ++l) {
    layer_quantum[l] += o.layer_quantum[l];
    layer_classical[l] += o.layer_classical[l];
  }
}

Status SlotPool::init(const host::LoadedModel& m, const ContextOptions& opt, int n, int max_waiting) {
  for (int i = 0; i < n; ++i) {
    auto s = std::make_unique<Slot>();
    s->index = i;
    Status st = s->ctx.init(m, opt);
    if (!st.ok()) return st;
    free_.push_back(s.get());
    slots_.push_back(std::move(s));
  }
  max_waiting_ = max_waiting;
  return Status();
}

Slot* SlotPool::acquire(std::chrono::milliseconds timeout, bool* queue_full) {
  std::unique_lock<std::mutex> lock(mu_);
  *queue_full = false;
  if (free_.empty()) {
    if (waiting_ >= max_waiting_) {
      *queue_full = true;
      return nullptr;
    }
    ++waiting_;
    bool got = cv_.wait_for(lock, timeout, [&] { return !free_.empty(); });
    --waiting_;
    if (!got) return nullptr;
  }
  Slot* s = free_.back();
  free_.pop_back();
  return s;
}

void SlotPool::release(Slot* s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(s);
  }
  cv_.notify_one();
}

int SlotPool::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return (int)(slots_.size() - free_.size());
}

int SlotPool::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

size_t utf8_complete(const std::string& s, size_t n) {
  // Walk back over at most 3 continuation bytes to the last lead byte; keep it only if complete.
  size_t i = n, back = 0;
  while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  if (i == 0) return n;
  unsigned char lead = (unsigned char)s[i - 1];
  size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (need == 1) return n;           // ASCII (or a stray continuation run): nothing to hold back
  return back + 1 >= need ? n : i - 1;  // incomplete: hold the sequence back
}

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

namespace {
// The sampling distribution's log-softmax at `id`, and the `k` most likely tokens.
void record_logprob(const float* logits, int vocab, int32_t id, int k, std::vector<int32_t>* order, TokenLogprob* out) {
  float top = -INFINITY;
  for (int i = 0; i < vocab; ++i)
    if (logits[i] > top) top = logits[i];
  double sum = 0;
  for (int i = 0; i < vocab; ++i)
    if (!std::isnan(logits[i])) sum += std::exp((double)logits[i] - top);
  const float log_z = top + (float)std::log(sum);
  auto lp = [&](int32_t t) { return std::isnan(logits[t]) ? -INFINITY : logits[t] - log_z; };
  out->id = id;
  out->logprob = lp(id);
  out->top.clear();
  if (k <= 0) return;
  k = std::min(k, vocab);
  std::partial_sort(order->begin(), order->begin() + k, order->end(), [&](int32_t a, int32_t b) {
    return lp(a) > lp(b) || (lp(a) == lp(b) && a < b);
  });
  for (int i = 0; i < k; ++i) out->top.push_back({(*order)[i], lp((*order)[i])});
}
}  // namespace

bool generate(Slot& slot, const host::LoadedModel& m, const Energy& e, const GenRequest& req, const OnText& on_text,
              GenResult* out, std::string* err) {
  const auto t0 = Clock::now();
  Context& ctx = slot.ctx.ctx();
  ctx.reset();
  GenResult& r = *out;
  r.prompt_tokens = (int)req.prompt.size();
  auto run = [&](int32_t token) {
    Status st = ctx.eval(token);
    if (!st.ok()) {
      *err = st.message();
      return false;
    }
    const TokenStats& s = ctx.stats();
    r.counters.add(s, energy::estimate(*e.profiles, *e.profile, s.flops, s.qsim_flops, s.circuits));
    return true;
  };
  // The prompt in blocks of up to n_batch tokens (batched prompt processing), every token counted.
  for (size_t at = 0; at < req.prompt.size();) {
    const int n = (int)std::min<size_t>((size_t)ctx.n_batch(), req.prompt.size() - at);
    Status st = ctx.eval(req.prompt.data() + at, n, at + (size_t)n == req.prompt.size());  // logits: the last block's
    if (!st.ok()) {
      *err = st.message();
      return false;
    }
    for (int i = 0; i < n; ++i) {
      const TokenStats& s = ctx.stats(i);
      r.counters.add(s, energy::estimate(*e.profiles, *e.profile, s.flops, s.qsim_flops, s.circuits));
    }
    at += (size_t)n;
  }

  const int vocab = m.model().cfg.vocab;
  host::HostSampler sampler;  // per request: its own seed and settings (allocated here, not per token)
  Status st = sampler.init(vocab, req.sampler);
  if (!st.ok()) {
    *err = st.message();
    return false;
  }
  // Bias and penalties change a copy of the logits; counts are of generated tokens (OpenAI's rule).
  const bool adjust = !req.logit_bias.empty() || req.presence_penalty != 0 || req.frequency_penalty != 0;
  std::vector<float> adjusted(adjust ? (size_t)vocab : 0);
  std::vector<int32_t> counts(req.presence_penalty != 0 || req.frequency_penalty != 0 ? (size_t)vocab : 0);
  std::vector<int32_t> order;
  if (req.logprobs > 0) {
    order.resize((size_t)vocab);
    for (int i = 0; i < vocab; ++i) order[(size_t)i] = i;
  }
  std::string all;   // everything generated
  size_t sent = 0;   // bytes of `all` already given to on_text
  int32_t last = -1;
  auto tokens_before = [&](size_t bytes) {
    size_t k = 0;
    while (k < r.tokens.size() && r.tokens[k].offset < bytes) ++k;
    return k;
  };
  for (int i = 0; i < req.max_tokens; ++i) {
    if (i > 0) {  // the previous token goes in now: the last one is never decoded (as in `qtf run`)
      if (ctx.n_past() >= ctx.n_ctx()) break;  // context full: finish "length"
      if (!run(last)) return false;
    }
    st = check_logits(ctx.logits(), vocab);  // damaged weights: an error, not token 0 forever
    if (!st.ok()) {
      *err = st.message();
      return false;
    }
    const float* logits = ctx.logits();
    if (adjust) {
      std::copy(logits, logits + vocab, adjusted.begin());
      for (const auto& b : req.logit_bias) adjusted[(size_t)b.first] += b.second;
      if (!counts.empty())
        for (int t = 0; t < vocab; ++t)
          if (counts[(size_t)t])
            adjusted[(size_t)t] -= (float)counts[(size_t)t] * req.frequency_penalty + req.presence_penalty;
      logits = adjusted.data();
    }
    last = sampler.get().sample(logits);
    sampler.get().accept(last);
    if (!counts.empty()) ++counts[(size_t)last];
    if (i == 0) r.first_token_ms = ms_since(t0);
    ++r.completion_tokens;
    if (last == req.eos) {  // the end of the text: not part of it
      r.finish = "stop";
      break;
    }
    if (req.logprobs >= 0) {
      r.tokens.emplace_back();
      record_logprob(logits, vocab, last, req.logprobs, &order, &r.tokens.back());
      r.tokens.back().offset = all.size();
    }
    format::Str piece = m.tokenizer().token_text(last);
    all.append(piece.data, piece.size);
    // The earliest stop sequence ends the text (and is not part of it).
    size_t stop_at = std::string::npos;
    for (const std::string& s : req.stop) {
      size_t p = all.find(s, sent > s.size() ? sent - s.size() : 0);
      if (p != std::string::npos) stop_at = std::min(stop_at, p);
    }
    if (stop_at != std::string::npos) {
      all.resize(stop_at);
      r.tokens.resize(tokens_before(stop_at));
      r.finish = "stop";
      break;
    }
    // Hold back a tail that may still become a stop sequence, and an unfinished UTF-8 sequence.
    size_t hold = 0;
    for (const std::string& s : req.stop)
      for (size_t k = std::min(s.size() - 1, all.size()); k > hold; --k)
        if (all.compare(all.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
    size_t ready = utf8_complete(all, all.size() - hold);
    if (ready > sent) {
      if (!on_text(all.substr(sent, ready - sent), tokens_before(ready))) {
        *err = "client disconnected";
        return false;
      }
      sent = ready;
    }
  }
  if (all.size() > sent && !on_text(all.substr(sent), r.tokens.size())) {
    *err = "client disconnected";
    return false;
  }
  r.text = std::move(all);
  r.total_ms = ms_since(t0);
  return true;
}

}  // namespace qtf::serve
