// qtf serve: OpenAI-compatible /v1/completions and /v1/chat/completions (with server-sent-event
// streaming), /v1/models, /tokenize, /detokenize, /apply-template, /health and /metrics, over one model
// shared read-only by a fixed pool of contexts. HTTP: cpp-httplib (Debian libcpp-httplib-dev) behind
// connection.cpp's limits; JSON: nlohmann/json (nlohmann-json3-dev). See docs/ecosystem.md.
#include "serve.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "connection.h"
#include "generation.h"
#include "options.h"
#include "request.h"

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
    "  --api-key KEY           require 'Authorization: Bearer KEY' (all but /health); also $QTF_API_KEY\n"
    "  --allow-host NAME       a Host name requests may use besides localhost and IP addresses (repeat;\n"
    "                          '*' allows any: this turns off the DNS-rebinding guard)\n"
    "  --allow-origin ORIGIN   a web page origin (https://app.example) allowed to call the server: CORS\n"
    "                          headers for it (repeat; '*' any). Default: none, cross-origin calls get 403\n"
    "  --chat-template FORM    chat prompt form: chatml, llama2, mistral, llama3, zephyr, phi3, gemma or\n"
    "                          transcript (default: recognised from the model's tokenizer.chat_template)\n"
    "  --chat-template-file F  a chat template (Jinja text) to recognise instead of the model's\n"
    "  --parallel N            requests generated at once, one context each (default 4)\n"
    "  --queue N               requests that may wait for a free context; more get 503 (default 16)\n"
    "  --queue-timeout S       seconds a request waits for a context before 503 (default 30)\n"
    "  --max-tokens N          largest max_tokens a request may ask for (default 4096)\n"
    "  --max-body BYTES        largest request body (default 1048576; larger gets 413)\n"
    "  --max-connections N     connections served at once; more get 503 (default 128)\n"
    "  --request-timeout S     seconds a client has to send a whole request, head and body (default 10)\n"
    "  --write-timeout S       seconds in all a response may wait on a client that does not read (default 10)\n"
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
  int n_ctx = 0;
  serve::RequestContext rc;
  std::map<std::string, int> markers;  // chat markers the vocabulary holds as one token
  std::chrono::milliseconds queue_timeout{30000};
  std::atomic<int64_t> next_id{1};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // Access policy.
  std::string api_key;
  std::vector<std::string> allow_hosts, allow_origins;
  serve::HttpLimits limits;
};

// ---- errors ----

void send_error(httplib::Response& res, int status, const std::string& message, const char* type,
                const char* param = nullptr) {
  json e = {{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}};
  e["error"]["param"] = param ? json(param) : json(nullptr);
  res.status = status;
  res.set_content(json_text(e), "application/json");
}

void send_bad(httplib::Response& res, const serve::BadRequest& bad) {
  send_error(res, bad.status, bad.message, "invalid_request_error", bad.param.empty() ? nullptr : bad.param.c_str());
}

// ---- access policy (before a request's body is read) ----

std::string lower(std::string s) {
  for (char& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// Host names a request may use: localhost, IP addresses (a DNS-rebinding page has a name, never an address)
// and --allow-host names.
bool host_allowed(const Server& S, const std::string& host_header) {
  if (host_header.empty()) return true;  // HTTP/1.0 clients; browsers always send Host
  std::string h = lower(trim(host_header));
  if (!h.empty() && h[0] == '[') {
    const size_t close = h.find(']');
    if (close == std::string::npos) return false;
    h = h.substr(1, close - 1);
    in6_addr a6;
    if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) return true;
  } else {
    const size_t colon = h.find(':');
    if (colon != std::string::npos) h = h.substr(0, colon);
    in_addr a4;
    if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return true;
  }
  if (h == "localhost") return true;
  for (const std::string& a : S.allow_hosts)
    if (a == "*" || lower(a) == h) return true;
  return false;
}

bool origin_allowed(const Server& S, const std::string& origin) {
  for (const std::string& a : S.allow_origins)
    if (a == "*" || lower(a) == lower(origin)) return true;
  return false;
}

// Compares without an early exit, so the time taken does not tell how much of a guess was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= (unsigned)(a[i] ^ b[i % (b.size() ? b.size() : 1)]);
  return diff == 0 && !b.empty();
}

void add_cors(const Server& S, const httplib::Request& req, httplib::Response& res) {
  const std::string origin = req.get_header_value("Origin");
  if (origin.empty() || !origin_allowed(S, origin)) return;
  res.set_header("Access-Control-Allow-Origin", origin);
  res.set_header("Vary", "Origin");
}

// Answers here (Handled) anything refused before the body is read, OPTIONS, and /v1/models/{id}.
httplib::Server::HandlerResponse pre_route(Server& S, const httplib::Request& req, httplib::Response& res) {
  using R = httplib::Server::HandlerResponse;
  auto refuse = [&](int status, const std::string& message, const char* type = "invalid_request_error") {
    send_error(res, status, message, type);
    S.metrics.count("refused", status);
    return R::Handled;
  };
  // httplib adds REMOTE_ADDR, REMOTE_PORT, LOCAL_ADDR and LOCAL_PORT to the headers it read.
  if ((int)req.headers.size() - 4 > S.limits.max_headers)
    return refuse(431, "too many request headers (at most " + std::to_string(S.limits.max_headers) + ")");
  if (req.get_header_value_count("Host") > 1 || !host_allowed(S, req.get_header_value("Host")))
    return refuse(403, "Host '" + req.get_header_value("Host") + "' is not allowed (see --allow-host)");
  const std::string origin = req.get_header_value("Origin");
  if (!origin.empty() && !origin_allowed(S, origin))
    return refuse(403, "cross-origin requests from '" + origin + "' are refused (see --allow-origin)");
  if (req.method == "OPTIONS") {  // a CORS preflight (or a client asking what is allowed)
    res.status = 204;
    res.set_header("Allow", "GET, POST, OPTIONS");
    if (!origin.empty()) {
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.set_header("Access-Control-Max-Age", "600");
    }
    return R::Handled;
  }
  if (!S.api_key.empty() && req.path != "/health") {
    const std::string auth = req.get_header_value("Authorization");
    const bool bearer = auth.size() > 7 && lower(auth.substr(0, 7)) == "bearer ";
    if (!bearer || !same_secret(trim(auth.substr(7)), S.api_key)) {
      res.set_header("WWW-Authenticate", "Bearer");
      return refuse(401, "a valid API key is required: 'Authorization: Bearer KEY'", "authentication_error");
    }
  }
  if (req.method == "POST") {
    const std::string encoding = lower(trim(req.get_header_value("Content-Encoding")));
    if (!encoding.empty() && encoding != "identity")
      return refuse(415, "Content-Encoding '" + encoding + "' is not accepted: send the body uncompressed");
    const std::string type = lower(trim(req.get_header_value("Content-Type").substr(
        0, req.get_header_value("Content-Type").find(';'))));
    if (type != "application/json")
      return refuse(415, "Content-Type must be application/json (got '" + req.get_header_value("Content-Type") + "')");
    const bool has_te = req.has_header("Transfer-Encoding"), has_cl = req.has_header("Content-Length");
    if (has_te && (lower(trim(req.get_header_value("Transfer-Encoding"))) != "chunked" || has_cl ||
                   req.get_header_value_count("Transfer-Encoding") > 1))
      return refuse(400, "Transfer-Encoding must be 'chunked' alone, without Content-Length");
    if (!has_te && !has_cl) return refuse(411, "a request body needs Content-Length (or chunked encoding)");
    if (has_cl) {
      const std::string cl = trim(req.get_header_value("Content-Length"));
      if (req.get_header_value_count("Content-Length") > 1 || cl.empty() || cl.size() > 18 ||
          cl.find_first_not_of("0123456789") != std::string::npos)
        return refuse(400, "Content-Length must be one decimal number");
      if (std::strtoull(cl.c_str(), nullptr, 10) > S.limits.max_body)
        return refuse(413, "the request body is too large (at most " + std::to_string(S.limits.max_body) +
                               " bytes; see --max-body)");
    }
  }
  static const std::string models = "/v1/models/";
  if (req.method == "GET" && req.path.compare(0, models.size(), models) == 0) {
    const std::string id = req.path.substr(models.size());
    if (id != S.name) {
      send_error(res, 404, "the model '" + id + "' does not exist (this server has '" + S.name + "')",
                 "invalid_request_error", "model");
      return R::Handled;
    }
    res.set_content(json_text({{"id", S.name}, {"object", "model"}, {"created", 0}, {"owned_by", "qtf"}}),
                    "application/json");
    return R::Handled;
  }
  return R::Unhandled;
}

// A chunked body is only bounded while read (no length up front): check what arrived.
bool body_fits(const Server& S, const httplib::Request& req, httplib::Response& res, const char* endpoint,
               Metrics& m) {
  if (req.body.size() <= S.limits.max_body) return true;
  send_error(res, 413, "the request body is too large (at most " + std::to_string(S.limits.max_body) +
                           " bytes; see --max-body)",
             "invalid_request_error");
  m.count(endpoint, 413);
  return false;
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

std::string token_string(const Server& S, int32_t id) {
  format::Str t = S.model.tokenizer().token_text(id);
  return std::string(t.data, t.size);
}

// OpenAI's logprobs objects for tokens [from, to) of r: completions' (parallel lists) or chat's (a list).
json logprobs_json(const Server& S, const GenResult& r, size_t from, size_t to, bool chat, size_t text_base) {
  if (chat) {
    json content = json::array();
    auto entry = [&](int32_t id, float lp) {
      const std::string t = token_string(S, id);
      json bytes = json::array();
      for (unsigned char c : t) bytes.push_back((int)c);
      return json{{"token", t}, {"logprob", std::isfinite(lp) ? lp : -9999.0f}, {"bytes", bytes}};
    };
    for (size_t i = from; i < to; ++i) {
      json e = entry(r.tokens[i].id, r.tokens[i].logprob);
      e["top_logprobs"] = json::array();
      for (const auto& alt : r.tokens[i].top) e["top_logprobs"].push_back(entry(alt.first, alt.second));
      content.push_back(e);
    }
    return {{"content", content}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (size_t i = from; i < to; ++i) {
    tokens.push_back(token_string(S, r.tokens[i].id));
    lps.push_back(std::isfinite(r.tokens[i].logprob) ? r.tokens[i].logprob : -9999.0f);
    json top = json::object();
    for (const auto& alt : r.tokens[i].top) top[token_string(S, alt.first)] = std::isfinite(alt.second) ? alt.second : -9999.0f;
    tops.push_back(top);
    offsets.push_back(text_base + r.tokens[i].offset);
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
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

// Choice i of a request: the same request with seed + i.
GenRequest choice_request(const serve::ParsedRequest& pr, int i) {
  GenRequest g = pr.gen;
  g.sampler.seed += (uint64_t)i;
  return g;
}

// Sums the choices of a request into one result for usage and the qtf report.
void add_choice(GenResult* total, const GenResult& r, int i) {
  if (i == 0) total->prompt_tokens = r.prompt_tokens;
  total->completion_tokens += r.completion_tokens;
  total->counters.merge(r.counters);
  if (i == 0) total->first_token_ms = r.first_token_ms;
  total->total_ms += r.total_ms;
}

void handle_generate(Server& S, const httplib::Request& http, httplib::Response& res, bool chat) {
  const std::string endpoint = chat ? "chat_completions" : "completions";
  if (!body_fits(S, http, res, endpoint.c_str(), S.metrics)) return;
  auto pr = std::make_shared<serve::ParsedRequest>();
  serve::BadRequest bad;
  if (!serve::parse_generation(S.rc, http.body, chat, pr.get(), &bad)) {
    send_bad(res, bad);
    S.metrics.count(endpoint, bad.status);
    return;
  }
  // Characters outside the vocabulary are left out of the prompt: say so (qtf run warns on stderr).
  json warnings = json::array();
  if (pr->dropped_bytes > 0) {
    warnings.push_back(std::to_string(pr->dropped_bytes) +
                       " bytes of the prompt are not in this model's vocabulary and were left out");
    res.set_header("X-Qtf-Warning", warnings[0].get<std::string>());
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
  serve::Energy energy{&S.profiles, S.profile};
  const std::string echo = pr->echo ? pr->prompt_text : std::string();

  if (!pr->stream) {
    GenResult total;
    json choices = json::array();
    for (int i = 0; i < pr->n; ++i) {
      GenResult r;
      std::string err;
      if (!serve::generate(*slot, S.model, energy, choice_request(*pr, i),
                           [](const std::string&, size_t) { return true; }, &r, &err)) {
        send_error(res, 500, "generation failed: " + err, "server_error");
        S.metrics.count(endpoint, 500);
        return;
      }
      json choice = {{"index", i}, {"finish_reason", r.finish}, {"logprobs", nullptr}};
      if (pr->gen.logprobs >= 0) choice["logprobs"] = logprobs_json(S, r, 0, r.tokens.size(), chat, echo.size());
      if (chat) choice["message"] = {{"role", "assistant"}, {"content", r.text}};
      else choice["text"] = echo + r.text;
      choices.push_back(choice);
      add_choice(&total, r, i);
    }
    json out = {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", created},
                {"model", S.name}, {"choices", choices}, {"usage", usage_json(total)},
                {"qtf", qtf_json(total, S.profile->name)}};
    if (!warnings.empty()) out["warnings"] = warnings;
    res.set_content(json_text(out), "application/json");
    record(S, endpoint, total, true);
    return;
  }

  // Streaming: one server-sent event per text piece, then a chunk with finish_reason per choice (choices one
  // after another), the usage chunk when asked for, then [DONE]. The provider runs on this connection's
  // thread after the handler returns; the lease keeps the slot.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream", [&S, pr, lease, id, created, chat, endpoint, energy, warnings, echo](size_t,
                                                                                            httplib::DataSink& sink) {
        auto event = [&](const json& j) {
          std::string line = "data: " + json_text(j) + "\n\n";
          return sink.write(line.data(), line.size());
        };
        auto chunk = [&](int index, const json& delta_or_text, const json& finish) {
          json choice = {{"index", index}, {"finish_reason", finish}, {"logprobs", nullptr}};
          if (chat) choice["delta"] = delta_or_text;
          else choice["text"] = delta_or_text;
          return json{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                      {"created", created}, {"model", S.name}, {"choices", json::array({choice})}};
        };
        GenResult total;
        bool ok = true;
        std::string err;
        for (int i = 0; ok && i < pr->n; ++i) {
          ok = chat ? event(chunk(i, {{"role", "assistant"}, {"content", ""}}, nullptr))
                    : echo.empty() || event(chunk(i, json(echo), nullptr));
          GenResult r;
          size_t logged = 0;  // tokens whose logprobs went out
          ok = ok && serve::generate(*lease->slot, S.model, energy, choice_request(*pr, i),
                                     [&](const std::string& piece, size_t ready) {
                                       json c = chunk(i, chat ? json{{"content", piece}} : json(piece), nullptr);
                                       if (pr->gen.logprobs >= 0) {
                                         c["choices"][0]["logprobs"] =
                                             logprobs_json(S, r, logged, ready, chat, echo.size());
                                         logged = ready;
                                       }
                                       return event(c);
                                     },
                                     &r, &err);
          if (!ok) {
            total.counters.merge(r.counters);
            break;
          }
          json last = chunk(i, chat ? json::object() : json(""), r.finish);
          if (pr->gen.logprobs >= 0 && logged < r.tokens.size())
            last["choices"][0]["logprobs"] = logprobs_json(S, r, logged, r.tokens.size(), chat, echo.size());
          add_choice(&total, r, i);
          if (i + 1 == pr->n) {
            last["qtf"] = qtf_json(total, S.profile->name);
            if (!warnings.empty()) last["warnings"] = warnings;
          }
          ok = event(last);
        }
        if (ok && pr->include_usage) {
          ok = event({{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                      {"created", created}, {"model", S.name}, {"choices", json::array()},
                      {"usage", usage_json(total)}});
        }
        if (ok) {
          const char done[] = "data: [DONE]\n\n";
          ok = sink.write(done, sizeof done - 1);
        } else if (!err.empty() && err != "client disconnected") {
          event({{"error", {{"message", "generation failed: " + err}, {"type", "server_error"}}}});
        }
        record(S, endpoint, total, ok);
        sink.done();
        return ok;
      });
}

void handle_tokenize(Server& S, const httplib::Request& req, httplib::Response& res) {
  if (!body_fits(S, req, res, "tokenize", S.metrics)) return;
  std::vector<int32_t> ids;
  int dropped = 0;
  serve::BadRequest bad;
  if (!serve::parse_tokenize(S.rc, req.body, &ids, &dropped, &bad)) {
    send_bad(res, bad);
    S.metrics.count("tokenize", bad.status);
    return;
  }
  json out = {{"tokens", ids}};
  if (dropped > 0)
    out["warnings"] = {std::to_string(dropped) + " bytes are not in this model's vocabulary and were left out"};
  res.set_content(json_text(out), "application/json");
  S.metrics.count("tokenize", 200);
}

void handle_detokenize(Server& S, const httplib::Request& req, httplib::Response& res) {
  if (!body_fits(S, req, res, "detokenize", S.metrics)) return;
  std::string text;
  serve::BadRequest bad;
  if (!serve::parse_detokenize(S.rc, req.body, &text, &bad)) {
    send_bad(res, bad);
    S.metrics.count("detokenize", bad.status);
    return;
  }
  res.set_content(json_text({{"content", text}}), "application/json");
  S.metrics.count("detokenize", 200);
}

void handle_apply_template(Server& S, const httplib::Request& req, httplib::Response& res) {
  if (!body_fits(S, req, res, "apply_template", S.metrics)) return;
  std::string prompt;
  serve::BadRequest bad;
  if (!serve::parse_apply_template(S.rc, req.body, &prompt, &bad)) {
    send_bad(res, bad);
    S.metrics.count("apply_template", bad.status);
    return;
  }
  res.set_content(json_text({{"prompt", prompt}, {"chat_template", serve::chat_form_name(S.rc.chat_form)}}),
                  "application/json");
  S.metrics.count("apply_template", 200);
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

namespace {

// The tokenizer keys (CONTRACT.md) and the chat form: --chat-template, else --chat-template-file, else the
// model's tokenizer.chat_template. False (error printed) for a bad option.
bool setup_requests(Server& S, const std::string& form, const char* template_file, int max_tokens) {
  serve::RequestContext& rc = S.rc;
  const format::ModelFile& f = S.model.file();
  rc.tokenizer = &S.model.tokenizer();
  rc.vocab = S.model.model().cfg.vocab;
  rc.n_ctx = S.n_ctx;
  rc.max_tokens_cap = max_tokens;
  int64_t bos = -1, eos = -1, add_bos = 0;
  (void)f.get_i64_or("tokenizer.bos_id", &bos);
  (void)f.get_i64_or("tokenizer.eos_id", &eos);
  (void)f.get_i64_or("tokenizer.add_bos", &add_bos);
  rc.special.bos = bos >= 0 && bos < rc.vocab ? (int)bos : -1;
  rc.special.eos = eos >= 0 && eos < rc.vocab ? (int)eos : -1;
  rc.add_bos = add_bos == 1 && rc.special.bos >= 0;
  // Chat markers the vocabulary holds as single tokens.
  for (int id = 0; id < rc.vocab; ++id) {
    format::Str t = S.model.tokenizer().token_piece(id);  // as spelled: control tokens stand for no text
    if (t.size < 3 || t.size > 32 || t.data[0] != '<') continue;
    const std::string s(t.data, t.size);
    for (const std::string& m : serve::chat_markers())
      if (s == m && !S.markers.count(s)) S.markers[s] = id;
  }
  const std::map<std::string, int>* markers = &S.markers;
  rc.special.find = [markers](const std::string& m) {
    auto it = markers->find(m);
    return it == markers->end() ? -1 : it->second;
  };
  if (!form.empty()) {
    if (!serve::chat_form_from_name(form, &rc.chat_form)) {
      std::fprintf(stderr, "qtf serve: --chat-template: unknown form '%s' (chatml, llama2, mistral, llama3, "
                           "zephyr, phi3, gemma, transcript)\n", form.c_str());
      return false;
    }
    return true;
  }
  std::string text, source;
  if (template_file) {
    std::ifstream in(template_file, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    if (!in) {
      std::fprintf(stderr, "qtf serve: cannot read the chat template file %s\n", template_file);
      return false;
    }
    text = all.str().substr(0, 1 << 20);
    source = template_file;
  } else {
    format::Str t;
    format::MetaEntry e;
    if (f.find_meta("tokenizer.chat_template", &e) && e.as_str(&t)) text.assign(t.data, t.size);
    source = "the model's tokenizer.chat_template";
  }
  if (text.empty()) return true;  // no template: the transcript
  bool recognised = false;
  rc.chat_form = serve::recognise_chat_template(text, &recognised);
  if (!recognised)
    std::fprintf(stderr, "qtf serve: warning: %s is not a form qtf knows; chat uses the plain transcript "
                         "(choose one with --chat-template)\n", source.c_str());
  return true;
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  ModelOptions mo;
  // A long-running server reads the model into memory: a file rewritten in place while mapped would
  // change the weights under it (or, truncated, kill it with SIGBUS). --mmap maps it (docs/reliability.md).
  mo.mmap = false;
  std::string host = "127.0.0.1", name, chat_form;
  const char* chat_template_file = nullptr;
  auto S = std::make_unique<Server>();
  int port = 8080, parallel = 4, queue = 16, queue_timeout_s = 30, max_tokens = 4096, max_body = 1 << 20;
  int max_connections = 128, request_timeout_s = 10, write_timeout_s = 10;
  if (const char* key = std::getenv("QTF_API_KEY")) S->api_key = key;
  const int parsed = parse_options(argc, argv, "serve", kUsage, &mo, [&](Args& a) {
    const char* v = nullptr;
    bool ok = true;
    if (a.is("--host")) ok = a.value(&v) && (host = v, true);
    else if (a.is("--port")) ok = a.int_value(0, 65535, &port);
    else if (a.is("--api-key")) ok = a.value(&v) && (S->api_key = v, true);
    else if (a.is("--allow-host")) ok = a.value(&v) && (S->allow_hosts.push_back(v), true);
    else if (a.is("--allow-origin")) ok = a.value(&v) && (S->allow_origins.push_back(v), true);
    else if (a.is("--chat-template")) ok = a.value(&v) && (chat_form = v, true);
    else if (a.is("--chat-template-file")) ok = a.value(&chat_template_file);
    else if (a.is("--parallel")) ok = a.int_value(1, 256, &parallel);
    else if (a.is("--queue")) ok = a.int_value(0, 4096, &queue);
    else if (a.is("--queue-timeout")) ok = a.int_value(0, 3600, &queue_timeout_s);
    else if (a.is("--max-tokens")) ok = a.int_value(1, 1 << 20, &max_tokens);
    else if (a.is("--max-body")) ok = a.int_value(64, 1 << 30, &max_body);
    else if (a.is("--max-connections")) ok = a.int_value(8, 4096, &max_connections);
    else if (a.is("--request-timeout")) ok = a.int_value(1, 3600, &request_timeout_s);
    else if (a.is("--write-timeout")) ok = a.int_value(1, 3600, &write_timeout_s);
    else if (a.is("--name")) ok = a.value(&v) && (name = v, true);
    else return kUnknown;
    return ok ? kParsed : kBadValue;
  });
  if (parsed != kConsumed) return parsed;

  if (!load_model(mo, &S->model) || !load_profiles(mo, &S->profiles, &S->profile)) return 1;
  Status st = validate_options(S->model.model(), mo.ctx);
  // Every request waits on its own connection thread: keep room for /health and refusals beside them.
  if (st.ok() && parallel + queue + 8 > max_connections)
    st = Status::error(Err::invalid_argument, "--max-connections %d is too small for --parallel %d + --queue %d "
                       "(needs at least %d)", max_connections, parallel, queue, parallel + queue + 8);
  if (st.ok()) st = S->pool.init(S->model, mo.ctx, parallel, queue);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf serve: %s\n", st.message());
    return 1;
  }
  S->n_ctx = mo.ctx.n_ctx ? mo.ctx.n_ctx : S->model.model().cfg.context;
  S->queue_timeout = std::chrono::seconds(queue_timeout_s);
  if (!setup_requests(*S, chat_form, chat_template_file, max_tokens)) return 2;
  if (name.empty()) {
    const char* slash = std::strrchr(mo.model_path, '/');
    name = slash ? slash + 1 : mo.model_path;
  }
  S->name = name;
  S->limits.max_body = (size_t)max_body;
  S->limits.max_connections = max_connections;
  S->limits.request_timeout = std::chrono::seconds(request_timeout_s);
  S->limits.write_timeout = std::chrono::seconds(write_timeout_s);

  // SIGINT/SIGTERM: blocked in every thread, taken by one watcher thread that stops the server.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  serve::GuardedServer http(S->limits);
  Server& s = *S;

  http.set_pre_routing_handler(
      [&s](const httplib::Request& req, httplib::Response& res) { return pre_route(s, req, res); });
  // "Expect: 100-continue": the same checks first, so a refused body is never invited.
  http.set_expect_100_continue_handler([&s](const httplib::Request& req, httplib::Response& res) {
    return pre_route(s, req, res) == httplib::Server::HandlerResponse::Handled ? res.status : 100;
  });
  http.Get("/health", [&s](const httplib::Request&, httplib::Response& res) {
    json j = {{"status", "ok"}, {"model", s.name}, {"n_ctx", s.n_ctx}, {"slots", s.pool.size()},
              {"slots_busy", s.pool.busy()}, {"queue_waiting", s.pool.waiting()},
              {"chat_template", serve::chat_form_name(s.rc.chat_form)}};
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
  http.Post("/tokenize", [&s](const httplib::Request& req, httplib::Response& res) { handle_tokenize(s, req, res); });
  http.Post("/detokenize",
            [&s](const httplib::Request& req, httplib::Response& res) { handle_detokenize(s, req, res); });
  http.Post("/apply-template",
            [&s](const httplib::Request& req, httplib::Response& res) { handle_apply_template(s, req, res); });
  // Everything else: JSON errors (404 unknown path, 405 wrong method, 413 body too large, ...); a request
  // cut short by the connection's limits says which.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    const serve::ConnectionState* c = serve::current_connection();
    const serve::ReadFault fault = c ? c->fault : serve::ReadFault::none;
    if (fault == serve::ReadFault::timeout) {
      res.status = 408;
      send_error(res, 408, "the request did not arrive in time (see --request-timeout)", "invalid_request_error");
      return;
    }
    if (fault == serve::ReadFault::head_too_large) {
      send_error(res, 431, "the request head is too large", "invalid_request_error");
      return;
    }
    if (fault == serve::ReadFault::body_too_large) {
      send_error(res, 413, "the request body is too large (see --max-body)", "invalid_request_error");
      return;
    }
    if (!res.body.empty()) return;
    const char* msg = res.status == 404   ? "no such endpoint"
                      : res.status == 405 ? "method not allowed"
                      : res.status == 413 ? "the request body is too large (see --max-body)"
                                          : "bad request";
    send_error(res, res.status, std::string(msg) + ": " + req.method + " " + req.path,
               res.status >= 500 ? "server_error" : "invalid_request_error");
  });
  // After every answer: CORS headers for an allowed origin; an error answer closes the connection (its
  // body may be unread).
  http.set_post_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    add_cors(s, req, res);
    serve::ConnectionState* c = serve::current_connection();
    if (res.status >= 400 && c) c->close = true;
    if (c && c->close && res.get_header_value("Connection") != "close") {
      res.headers.erase("Keep-Alive");
      res.set_header("Connection", "close");
    }
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
  // listen() again on the bound socket widens it.
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
  std::printf("qtf serve: %s on http://%s:%d (%d contexts of %d tokens, queue %d, chat %s)\n", s.name.c_str(),
              host.c_str(), bound, parallel, s.n_ctx, queue, serve::chat_form_name(s.rc.chat_form));
  if (host != "127.0.0.1" && host != "localhost" && host != "::1" && s.api_key.empty())
    std::printf("qtf serve: warning: listening beyond this machine (%s) without --api-key: anyone who can reach "
                "it can use it\n", host.c_str());
  std::fflush(stdout);
  bool ok = http.listen_after_bind();
  if (!stopping) pthread_kill(watcher.native_handle(), SIGTERM);  // listen failed by itself: end the watcher
  watcher.join();
  std::printf("qtf serve: stopped\n");
  return ok ? 0 : 1;
}

}  // namespace qtf::cli
