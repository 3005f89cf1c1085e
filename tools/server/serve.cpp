// qtf serve: OpenAI-compatible /v1/completions and /v1/chat/completions (with server-sent-event
// streaming), /health and /metrics, over one model shared read-only by a fixed pool of contexts.
// HTTP: cpp-httplib (Debian libcpp-httplib-dev); JSON: nlohmann/json (nlohmann-json3-dev). See
// docs/ecosystem.md for the choices and the API.
#include "serve.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "generation.h"
#include "options.h"

namespace qtf::cli {
namespace {

using json = nlohmann::json;
using serve::GenRequest;
using serve::GenResult;

const char kUsage[] =
    "usage: qtf serve -m MODEL [options]\n"
    "  --host ADDR             address to listen on (default 127.0.0.1: this machine only;\n"
    "                          0.0.0.0 listens on every interface: anyone who can reach it can use it)\n"
    "  --port N                port (default 8080; 0 = any free port, printed at start)\n"
    "  --parallel N            requests generated at once, one context each (default 4)\n"
    "  --queue N               requests that may wait for a free context; more get 503 (default 16)\n"
    "  --queue-timeout S       seconds a request waits for a context before 503 (default 30)\n"
    "  --max-tokens N          largest max_tokens a request may ask for (default 4096)\n"
    "  --max-body BYTES        largest request body (default 1048576; larger gets 413)\n"
    "  --name NAME             model name reported by /v1/models (default: the file name)\n";

std::string json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Server-wide counters for /metrics (under a mutex: updated once per request).
struct Metrics {
  std::mutex mu;
  std::map<std::pair<std::string, int>, int64_t> requests;  // (endpoint, status) -> count
  int64_t prompt_tokens = 0, completion_tokens = 0, disconnects = 0;
  double latency_sum_s = 0, first_token_sum_s = 0;
  int64_t latency_count = 0;
  serve::PassCounters passes;

  void count(const std::string& endpoint, int status) {
    std::lock_guard<std::mutex> lock(mu);
    ++requests[{endpoint, status}];
  }
};

struct Server {
  host::LoadedModel model;
  energy::Profiles profiles;
  const energy::Profile* profile = nullptr;
  serve::SlotPool pool;
  Metrics metrics;
  std::string name;
  int n_ctx = 0, max_tokens_cap = 4096;
  std::chrono::milliseconds queue_timeout{30000};
  std::atomic<int64_t> next_id{1};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// ---- errors ----

void send_error(httplib::Response& res, int status, const std::string& message, const char* type,
                const char* param = nullptr) {
  json e = {{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}};
  e["error"]["param"] = param ? json(param) : json(nullptr);
  res.status = status;
  res.set_content(json_text(e), "application/json");
}

struct BadRequest {
  std::string message;
  std::string param;
};

// ---- request parsing ----

// The fields a request may have; any other is an error (a typo must not be silently ignored).
const std::set<std::string> kCommonFields = {"model", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                                             "repeat_penalty", "repeat_last_n", "seed", "stop", "stream", "n",
                                             "user", "presence_penalty", "frequency_penalty", "logprobs",
                                             "stream_options"};
const std::set<std::string> kCompletionFields = {"prompt", "echo", "suffix", "best_of"};
const std::set<std::string> kChatFields = {"messages", "max_completion_tokens"};

bool get_number(const json& body, const char* key, double lo, double hi, double* out, BadRequest* bad) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < lo || it->get<double>() > hi) {
    std::ostringstream m;
    m << "'" << key << "' must be a number in [" << lo << ", " << hi << "]";
    *bad = {m.str(), key};
    return false;
  }
  *out = it->get<double>();
  return true;
}

bool get_int(const json& body, const char* key, long lo, long hi, long* out, BadRequest* bad) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_number_integer() || it->get<long long>() < lo || it->get<long long>() > hi) {
    *bad = {"'" + std::string(key) + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
            key};
    return false;
  }
  *out = (long)it->get<long long>();
  return true;
}

// Parses the body into *req (prompt text in *prompt). chat: messages -> a plain-text transcript.
bool parse_request(const Server& S, const std::string& text, bool chat, GenRequest* req, std::string* prompt,
                   bool* stream, BadRequest* bad) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    *bad = {"the request body is not valid JSON", ""};
    return false;
  }
  if (!body.is_object()) {
    *bad = {"the request body must be a JSON object", ""};
    return false;
  }
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& k = it.key();
    if (!kCommonFields.count(k) && !(chat ? kChatFields : kCompletionFields).count(k)) {
      *bad = {"unknown field '" + k + "'", k};
      return false;
    }
  }
  // Accepted for compatibility only at their neutral values.
  for (const char* k : {"presence_penalty", "frequency_penalty"}) {
    auto it = body.find(k);
    if (it != body.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0)) {
      *bad = {std::string("'") + k + "' is not supported (use repeat_penalty)", k};
      return false;
    }
  }
  for (const char* k : {"logprobs", "echo", "suffix"}) {
    auto it = body.find(k);
    if (it != body.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>())) {
      *bad = {std::string("'") + k + "' is not supported", k};
      return false;
    }
  }
  long n = 1, best_of = 1;
  if (!get_int(body, "n", 1, 1, &n, bad) || !get_int(body, "best_of", 1, 1, &best_of, bad)) {
    if (bad->param == "n" || bad->param == "best_of") bad->message = "only one choice per request is supported";
    return false;
  }
  if (body.contains("model") && !body["model"].is_null() && !body["model"].is_string()) {
    *bad = {"'model' must be a string", "model"};
    return false;
  }
  if (body.contains("user") && !body["user"].is_null() && !body["user"].is_string()) {
    *bad = {"'user' must be a string", "user"};
    return false;
  }
  *stream = false;
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) {
      *bad = {"'stream' must be true or false", "stream"};
      return false;
    }
    *stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && !body["stream_options"].is_null() && !body["stream_options"].is_object()) {
    *bad = {"'stream_options' must be an object", "stream_options"};
    return false;
  }

  // Sampling: absent fields take qtf run's defaults.
  SamplerOptions& so = req->sampler;
  double temperature = so.temperature, top_p = so.top_p, min_p = so.min_p, repeat_penalty = so.repeat_penalty;
  long top_k = so.top_k, repeat_last_n = so.repeat_last_n, max_tokens = 128, seed = -1;
  if (!get_number(body, "temperature", 0, 100, &temperature, bad) || !get_number(body, "top_p", 0, 1, &top_p, bad) ||
      !get_number(body, "min_p", 0, 1, &min_p, bad) ||
      !get_number(body, "repeat_penalty", 0.01, 100, &repeat_penalty, bad) ||
      !get_int(body, "top_k", 0, 1 << 30, &top_k, bad) || !get_int(body, "repeat_last_n", 0, 1 << 16, &repeat_last_n, bad) ||
      !get_int(body, "seed", 0, (1L << 53), &seed, bad) ||
      !get_int(body, "max_tokens", 1, S.max_tokens_cap, &max_tokens, bad) ||
      (chat && !get_int(body, "max_completion_tokens", 1, S.max_tokens_cap, &max_tokens, bad)))
    return false;
  so.temperature = (float)temperature;
  so.top_p = (float)top_p;
  so.min_p = (float)min_p;
  so.repeat_penalty = (float)repeat_penalty;
  so.top_k = (int)top_k;
  so.repeat_last_n = (int)repeat_last_n;
  if (seed >= 0) so.seed = (uint64_t)seed;
  req->max_tokens = (int)max_tokens;

  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& st = body["stop"];
    std::vector<json> items = st.is_array() ? std::vector<json>(st.begin(), st.end()) : std::vector<json>{st};
    if (items.size() > 4) {
      *bad = {"'stop' may hold at most 4 sequences", "stop"};
      return false;
    }
    for (const json& s : items) {
      if (!s.is_string() || s.get<std::string>().empty() || s.get<std::string>().size() > 256) {
        *bad = {"'stop' must be a non-empty string (at most 256 bytes) or an array of them", "stop"};
        return false;
      }
      req->stop.push_back(s.get<std::string>());
    }
  }

  if (!chat) {
    auto it = body.find("prompt");
    if (it == body.end()) {
      *bad = {"'prompt' is required", "prompt"};
      return false;
    }
    if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) *prompt = (*it)[0].get<std::string>();
    else if (it->is_string()) *prompt = it->get<std::string>();
    else {
      *bad = {"'prompt' must be a string (or an array of one string)", "prompt"};
      return false;
    }
  } else {
    // A plain transcript the way the shipped (play-script) models know dialogue:
    // "USER:\n<content>\n\nASSISTANT:\n", turns separated by blank lines; a turn ends at a blank line.
    auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) {
      *bad = {"'messages' must be a non-empty array", "messages"};
      return false;
    }
    prompt->clear();
    for (const json& msg : *it) {
      if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() || !msg.contains("content") ||
          !msg["content"].is_string()) {
        *bad = {"each message needs a string 'role' and a string 'content'", "messages"};
        return false;
      }
      for (auto f = msg.begin(); f != msg.end(); ++f)
        if (f.key() != "role" && f.key() != "content" && f.key() != "name") {
          *bad = {"unknown field '" + f.key() + "' in a message", "messages"};
          return false;
        }
      std::string role = msg["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant") {
        *bad = {"a message's role must be system, user or assistant", "messages"};
        return false;
      }
      for (char& c : role) c = (char)std::toupper((unsigned char)c);
      *prompt += role + ":\n" + msg["content"].get<std::string>() + "\n\n";
    }
    *prompt += "ASSISTANT:\n";
    if (req->stop.empty()) req->stop.push_back("\n\n");
  }
  // Tokenize; the prompt must leave room for at least one generated token.
  const Tokenizer& tok = S.model.tokenizer();
  req->prompt.resize(prompt->size() + 1);  // at most one token per byte with today's tokenizers
  int n_ids = 0;
  Status st = tok.encode(prompt->data(), prompt->size(), req->prompt.data(), (int)req->prompt.size(), &n_ids, nullptr);
  if (st.code() == Err::out_of_range && n_ids > (int)req->prompt.size()) {  // if not: once more, as large as needed
    req->prompt.resize(n_ids);
    st = tok.encode(prompt->data(), prompt->size(), req->prompt.data(), (int)req->prompt.size(), &n_ids, nullptr);
  }
  if (!st.ok()) {
    *bad = {std::string("cannot tokenize the prompt: ") + st.message(), chat ? "messages" : "prompt"};
    return false;
  }
  req->prompt.resize(n_ids);
  if (n_ids == 0) {
    *bad = {"the prompt has no tokens in this model's vocabulary", chat ? "messages" : "prompt"};
    return false;
  }
  if (n_ids >= S.n_ctx) {
    *bad = {"the prompt is " + std::to_string(n_ids) + " tokens; this server's context holds " +
                std::to_string(S.n_ctx) + " (prompt + generated)",
            chat ? "messages" : "prompt"};
    return false;
  }
  return true;
}

// ---- responses ----

json usage_json(const GenResult& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}

// qtf's own per-request report (an extra field OpenAI clients ignore).
json qtf_json(const GenResult& r, const char* profile) {
  const serve::PassCounters& c = r.counters;
  int64_t rank_sum = 0, layer_tokens = 0, quantum = 0;
  for (const auto& kv : c.layer_rank) {
    rank_sum += (int64_t)kv.first.second * kv.second;
    layer_tokens += kv.second;
  }
  for (int64_t q : c.layer_quantum) quantum += q;
  const double passes = c.passes ? (double)c.passes : 1;
  return {{"forward_passes", c.passes},
          {"mean_rank", layer_tokens ? (double)rank_sum / (double)layer_tokens : 0.0},
          {"quantum_share", layer_tokens ? (double)quantum / (double)layer_tokens : 0.0},
          {"flops_per_token", (double)c.flops / passes},
          {"energy_J", c.energy_j},
          {"energy_profile", profile},
          {"time_to_first_token_ms", r.first_token_ms},
          {"total_ms", r.total_ms}};
}

void record(Server& S, const std::string& endpoint, const GenResult& r, bool completed) {
  std::lock_guard<std::mutex> lock(S.metrics.mu);
  ++S.metrics.requests[{endpoint, 200}];
  S.metrics.prompt_tokens += r.prompt_tokens;
  S.metrics.completion_tokens += r.completion_tokens;
  S.metrics.passes.merge(r.counters);
  if (!completed) ++S.metrics.disconnects;
  if (completed) {
    S.metrics.latency_sum_s += r.total_ms / 1000;
    S.metrics.first_token_sum_s += r.first_token_ms / 1000;
    ++S.metrics.latency_count;
  }
}

void handle_generate(Server& S, const httplib::Request& http, httplib::Response& res, bool chat) {
  const std::string endpoint = chat ? "chat_completions" : "completions";
  GenRequest req;
  std::string prompt;
  bool stream = false;
  BadRequest bad;
  if (!parse_request(S, http.body, chat, &req, &prompt, &stream, &bad)) {
    send_error(res, 400, bad.message, "invalid_request_error", bad.param.empty() ? nullptr : bad.param.c_str());
    S.metrics.count(endpoint, 400);
    return;
  }
  bool queue_full = false;
  serve::Slot* slot = S.pool.acquire(S.queue_timeout, &queue_full);
  if (!slot) {
    res.set_header("Retry-After", "1");
    send_error(res, 503,
               queue_full ? "the server is busy: every context is in use and the wait queue is full; retry later"
                          : "the server is busy: no context became free in time; retry later",
               "server_busy");
    S.metrics.count(endpoint, 503);
    return;
  }
  auto lease = std::make_shared<serve::SlotLease>(&S.pool, slot);
  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(S.next_id++);
  const int64_t created = (int64_t)std::time(nullptr);
  const std::string object = chat ? "chat.completion" : "text_completion";
  serve::Energy energy{&S.profiles, S.profile};

  if (!stream) {
    GenResult r;
    std::string err;
    if (!serve::generate(*slot, S.model, energy, req, [](const std::string&) { return true; }, &r, &err)) {
      send_error(res, 500, "generation failed: " + err, "server_error");
      S.metrics.count(endpoint, 500);
      return;
    }
    json choice = {{"index", 0}, {"finish_reason", r.finish}};
    if (chat) choice["message"] = {{"role", "assistant"}, {"content", r.text}};
    else {
      choice["text"] = r.text;
      choice["logprobs"] = nullptr;
    }
    json out = {{"id", id}, {"object", object}, {"created", created}, {"model", S.name},
                {"choices", json::array({choice})}, {"usage", usage_json(r)}, {"qtf", qtf_json(r, S.profile->name)}};
    res.set_content(json_text(out), "application/json");
    record(S, endpoint, r, true);
    return;
  }

  // Streaming: one server-sent event per text piece, then a final chunk with finish_reason, then [DONE].
  // The provider runs on this connection's thread after the handler returns; the lease keeps the slot.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  const std::string chunk_object = chat ? "chat.completion.chunk" : "text_completion";
  const bool include_usage = [&] {
    json b = json::parse(http.body, nullptr, false);
    return b.contains("stream_options") && b["stream_options"].is_object() &&
           b["stream_options"].value("include_usage", false);
  }();
  res.set_chunked_content_provider(
      "text/event-stream",
      [&S, req, lease, id, created, chat, chunk_object, endpoint, energy, include_usage](size_t,
                                                                                         httplib::DataSink& sink) {
        auto event = [&](const json& j) {
          std::string line = "data: " + json_text(j) + "\n\n";
          return sink.write(line.data(), line.size());
        };
        auto chunk = [&](const json& delta_or_text, const json& finish) {
          json choice = {{"index", 0}, {"finish_reason", finish}};
          if (chat) choice["delta"] = delta_or_text;
          else {
            choice["text"] = delta_or_text;
            choice["logprobs"] = nullptr;
          }
          return json{{"id", id}, {"object", chunk_object}, {"created", created}, {"model", S.name},
                      {"choices", json::array({choice})}};
        };
        bool alive = !chat || event(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
        GenResult r;
        std::string err;
        bool ok = alive && serve::generate(*lease->slot, S.model, energy, req,
                                           [&](const std::string& piece) {
                                             return event(chunk(chat ? json{{"content", piece}} : json(piece), nullptr));
                                           },
                                           &r, &err);
        if (ok) {
          json last = chunk(chat ? json::object() : json(""), r.finish);
          last["qtf"] = qtf_json(r, S.profile->name);
          if (include_usage) last["usage"] = usage_json(r);
          const char done[] = "data: [DONE]\n\n";
          ok = event(last) && sink.write(done, sizeof done - 1);
        } else if (alive && err != "client disconnected") {
          event({{"error", {{"message", "generation failed: " + err}, {"type", "server_error"}}}});
        }
        record(S, endpoint, r, ok);
        sink.done();
        return ok;
      });
}

// ---- /metrics (Prometheus text format) ----

std::string metrics_text(Server& S) {
  std::ostringstream o;
  o.precision(10);
  const double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - S.started).count();
  o << "# HELP qtf_up_seconds Seconds since the server started.\n# TYPE qtf_up_seconds gauge\nqtf_up_seconds " << up
    << "\n";
  o << "# HELP qtf_slots Contexts (requests generated at once).\n# TYPE qtf_slots gauge\nqtf_slots " << S.pool.size()
    << "\n";
  o << "# HELP qtf_slots_busy Contexts in use now.\n# TYPE qtf_slots_busy gauge\nqtf_slots_busy " << S.pool.busy()
    << "\n";
  o << "# HELP qtf_queue_waiting Requests waiting for a context now.\n# TYPE qtf_queue_waiting gauge\n"
       "qtf_queue_waiting "
    << S.pool.waiting() << "\n";
  std::lock_guard<std::mutex> lock(S.metrics.mu);
  const Metrics& m = S.metrics;
  o << "# HELP qtf_requests_total Requests by endpoint and HTTP status.\n# TYPE qtf_requests_total counter\n";
  for (const auto& kv : m.requests)
    o << "qtf_requests_total{endpoint=\"" << kv.first.first << "\",status=\"" << kv.first.second << "\"} "
      << kv.second << "\n";
  o << "# HELP qtf_client_disconnects_total Streams the client closed before the end.\n"
       "# TYPE qtf_client_disconnects_total counter\nqtf_client_disconnects_total "
    << m.disconnects << "\n";
  o << "# TYPE qtf_prompt_tokens_total counter\nqtf_prompt_tokens_total " << m.prompt_tokens << "\n";
  o << "# TYPE qtf_completion_tokens_total counter\nqtf_completion_tokens_total " << m.completion_tokens << "\n";
  o << "# HELP qtf_request_seconds Latency of completed requests.\n# TYPE qtf_request_seconds summary\n"
       "qtf_request_seconds_sum "
    << m.latency_sum_s << "\nqtf_request_seconds_count " << m.latency_count << "\n";
  o << "# TYPE qtf_time_to_first_token_seconds summary\nqtf_time_to_first_token_seconds_sum " << m.first_token_sum_s
    << "\nqtf_time_to_first_token_seconds_count " << m.latency_count << "\n";
  const serve::PassCounters& p = m.passes;
  o << "# HELP qtf_forward_passes_total Tokens run through the model (prompt and generated).\n"
       "# TYPE qtf_forward_passes_total counter\nqtf_forward_passes_total "
    << p.passes << "\n";
  o << "# HELP qtf_layer_rank_total Token-layers run at each tensor-train rank.\n# TYPE qtf_layer_rank_total counter\n";
  for (const auto& kv : p.layer_rank)
    o << "qtf_layer_rank_total{layer=\"" << kv.first.first << "\",rank=\"" << kv.first.second << "\"} " << kv.second
      << "\n";
  o << "# HELP qtf_layer_route_total Token-layers by attention route.\n# TYPE qtf_layer_route_total counter\n";
  for (size_t l = 0; l < p.layer_quantum.size(); ++l)
    o << "qtf_layer_route_total{layer=\"" << l << "\",route=\"quantum\"} " << p.layer_quantum[l] << "\n"
      << "qtf_layer_route_total{layer=\"" << l << "\",route=\"classical\"} " << p.layer_classical[l] << "\n";
  o << "# TYPE qtf_flops_total counter\nqtf_flops_total " << p.flops << "\n";
  o << "# HELP qtf_qsim_flops_total FLOPs spent simulating circuits.\n# TYPE qtf_qsim_flops_total counter\n"
       "qtf_qsim_flops_total "
    << p.qsim_flops << "\n";
  o << "# TYPE qtf_circuits_total counter\nqtf_circuits_total " << p.circuits << "\n";
  o << "# HELP qtf_energy_joules_total Estimated energy (from counted FLOPs and the profile; not measured).\n"
       "# TYPE qtf_energy_joules_total counter\nqtf_energy_joules_total{profile=\""
    << S.profile->name << "\"} " << p.energy_j << "\n";
  o << "# TYPE qtf_co2_grams_total counter\nqtf_co2_grams_total{profile=\"" << S.profile->name << "\"} " << p.co2_g
    << "\n";
  return o.str();
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  ModelOptions mo;
  std::string host = "127.0.0.1", name;
  int port = 8080, parallel = 4, queue = 16, queue_timeout_s = 30, max_tokens = 4096, max_body = 1 << 20;
  const int parsed = parse_options(argc, argv, "serve", kUsage, &mo, [&](Args& a) {
    const char* v = nullptr;
    bool ok = true;
    if (a.is("--host")) ok = a.value(&v) && (host = v, true);
    else if (a.is("--port")) ok = a.int_value(0, 65535, &port);
    else if (a.is("--parallel")) ok = a.int_value(1, 256, &parallel);
    else if (a.is("--queue")) ok = a.int_value(0, 4096, &queue);
    else if (a.is("--queue-timeout")) ok = a.int_value(0, 3600, &queue_timeout_s);
    else if (a.is("--max-tokens")) ok = a.int_value(1, 1 << 20, &max_tokens);
    else if (a.is("--max-body")) ok = a.int_value(64, 1 << 30, &max_body);
    else if (a.is("--name")) ok = a.value(&v) && (name = v, true);
    else return kUnknown;
    return ok ? kParsed : kBadValue;
  });
  if (parsed != kConsumed) return parsed;

  auto S = std::make_unique<Server>();
  if (!load_model(mo, &S->model) || !load_profiles(mo, &S->profiles, &S->profile)) return 1;
  Status st = validate_options(S->model.model(), mo.ctx);
  if (st.ok()) st = S->pool.init(S->model, mo.ctx, parallel, queue);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf serve: %s\n", st.message());
    return 1;
  }
  S->n_ctx = mo.ctx.n_ctx ? mo.ctx.n_ctx : S->model.model().cfg.context;
  S->max_tokens_cap = max_tokens;
  S->queue_timeout = std::chrono::seconds(queue_timeout_s);
  if (name.empty()) {
    const char* slash = std::strrchr(mo.model_path, '/');
    name = slash ? slash + 1 : mo.model_path;
  }
  S->name = name;

  // SIGINT/SIGTERM: blocked in every thread, taken by one watcher thread that stops the server.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  httplib::Server http;
  // Threads: every context's stream, every waiting request, and a few for /health, /metrics and
  // rejections. Connections beyond those wait in the listen backlog.
  const int threads = parallel + queue + 4;
  http.new_task_queue = [threads] { return new httplib::ThreadPool((size_t)threads); };
  http.set_payload_max_length((size_t)max_body);
  http.set_keep_alive_max_count(100);
  Server& s = *S;

  http.Get("/health", [&s](const httplib::Request&, httplib::Response& res) {
    json j = {{"status", "ok"}, {"model", s.name}, {"n_ctx", s.n_ctx}, {"slots", s.pool.size()},
              {"slots_busy", s.pool.busy()}, {"queue_waiting", s.pool.waiting()}};
    res.set_content(json_text(j), "application/json");
  });
  http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(s), "text/plain; version=0.0.4");
  });
  http.Get("/v1/models", [&s](const httplib::Request&, httplib::Response& res) {
    json m = {{"id", s.name}, {"object", "model"}, {"created", 0}, {"owned_by", "qtf"}};
    res.set_content(json_text({{"object", "list"}, {"data", json::array({m})}}), "application/json");
  });
  http.Post("/v1/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    handle_generate(s, req, res, false);
  });
  http.Post("/v1/chat/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    handle_generate(s, req, res, true);
  });
  // Everything else: JSON errors (404 unknown path, 405 wrong method, 413 body too large, ...).
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const char* msg = res.status == 404   ? "no such endpoint"
                      : res.status == 405 ? "method not allowed"
                      : res.status == 413 ? "the request body is too large (see --max-body)"
                                          : "bad request";
    send_error(res, res.status, std::string(msg) + ": " + req.method + " " + req.path,
               res.status >= 500 ? "server_error" : "invalid_request_error");
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, 500, "internal error", "server_error");
  });

  // Our socket options: SO_REUSEADDR (a quick restart), not the library's default SO_REUSEPORT (which lets
  // a second server bind the same port and silently share its connections). The sockets are kept to widen
  // the listen backlog below.
  std::vector<int> sockets;
  http.set_socket_options([&sockets](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockets.push_back(sock);
  });
  int bound = port;
  if (port == 0) bound = http.bind_to_any_port(host);
  else if (!http.bind_to_port(host, port)) bound = -1;
  if (bound <= 0) {
    std::fprintf(stderr, "qtf serve: cannot listen on %s:%d\n", host.c_str(), port);
    return 1;
  }
  // Debian's libcpp-httplib 0.11 listens with a backlog of 5 (compiled in): a burst of new connections
  // beyond that (seen under sanitizers with 24 at once) can be reset before the accept loop takes them.
  // listen() again on the bound socket widens it; the wait queue above stays the real bound.
  for (int fd : sockets) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening) listen(fd, SOMAXCONN);
  }
  std::atomic<bool> stopping{false};
  std::thread watcher([&http, &stopping, sigs] {
    int sig = 0;
    sigwait(&sigs, &sig);
    stopping = true;
    http.stop();
  });
  std::printf("qtf serve: %s on http://%s:%d (%d contexts of %d tokens, queue %d)\n", s.name.c_str(), host.c_str(),
              bound, parallel, s.n_ctx, queue);
  if (host != "127.0.0.1" && host != "localhost" && host != "::1")
    std::printf("qtf serve: warning: listening beyond this machine (%s); there is no authentication\n",
                host.c_str());
  std::fflush(stdout);
  bool ok = http.listen_after_bind();
  if (!stopping) pthread_kill(watcher.native_handle(), SIGTERM);  // listen failed by itself: end the watcher
  watcher.join();
  std::printf("qtf serve: stopped\n");
  return ok ? 0 : 1;
}

}  // namespace qtf::cli
