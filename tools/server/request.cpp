#include "request.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "host/session.h"

namespace qtf::serve {
namespace {

using json = nlohmann::json;

// The fields a request may have; any other is an error (a typo must not be silently ignored).
const std::set<std::string> kCommonFields = {
    "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n", "seed",
    "stop", "stream", "stream_options", "n", "user", "presence_penalty", "frequency_penalty", "logprobs",
    "logit_bias", "response_format"};
const std::set<std::string> kCompletionFields = {"prompt", "echo", "suffix", "best_of"};
const std::set<std::string> kChatFields = {"messages", "max_completion_tokens", "top_logprobs"};

bool fail(BadRequest* bad, const std::string& message, const std::string& param, int status = 400) {
  *bad = {message, param, status};
  return false;
}

// The value of key, or null when absent or JSON null (absent and null mean "the default").
const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// An integral number (an integer, or a float with no fraction) as int64; false when not one or too large.
bool as_integer(const json& v, long long* out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > (uint64_t)INT64_MAX) return false;
    *out = (long long)u;
    return true;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740992.0) return false;
    *out = (long long)d;
    return true;
  }
  return false;
}

bool get_number(const json& obj, const char* key, double lo, double hi, double* out, BadRequest* bad) {
  const json* v = field(obj, key);
  if (!v) return true;
  if (!v->is_number() || !std::isfinite(v->get<double>()) || v->get<double>() < lo || v->get<double>() > hi) {
    std::ostringstream m;
    m << "'" << key << "' must be a number in [" << lo << ", " << hi << "]";
    return fail(bad, m.str(), key);
  }
  *out = v->get<double>();
  return true;
}

bool get_int(const json& obj, const char* key, long long lo, long long hi, long long* out, BadRequest* bad) {
  const json* v = field(obj, key);
  if (!v) return true;
  long long x = 0;
  if (!as_integer(*v, &x) || x < lo || x > hi)
    return fail(bad, "'" + std::string(key) + "' must be an integer in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]",
                key);
  *out = x;
  return true;
}

bool get_bool(const json& obj, const char* key, bool* out, BadRequest* bad) {
  const json* v = field(obj, key);
  if (!v) return true;
  if (!v->is_boolean()) return fail(bad, "'" + std::string(key) + "' must be true or false", key);
  *out = v->get<bool>();
  return true;
}

bool get_string(const json& obj, const char* key, std::string* out, BadRequest* bad) {
  const json* v = field(obj, key);
  if (!v) return true;
  if (!v->is_string()) return fail(bad, "'" + std::string(key) + "' must be a string", key);
  if (out) *out = v->get<std::string>();
  return true;
}

// Parses the body as one JSON object, refusing deep nesting before the parser sees it.
bool parse_object(const std::string& body, json* out, BadRequest* bad) {
  if (json_depth(body.data(), body.size(), kMaxJsonDepth) > kMaxJsonDepth)
    return fail(bad, "the request body is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels", "");
  *out = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) return fail(bad, "the request body is not valid JSON", "");
  if (!out->is_object()) return fail(bad, "the request body must be a JSON object", "");
  return true;
}

bool check_fields(const json& body, const std::set<std::string>& a, const std::set<std::string>* b,
                  BadRequest* bad) {
  for (auto it = body.begin(); it != body.end(); ++it)
    if (!a.count(it.key()) && !(b && b->count(it.key()))) return fail(bad, "unknown field '" + it.key() + "'", it.key());
  return true;
}

// Token ids from a JSON array of integers, each in [0, vocab).
bool token_ids(const json& arr, int vocab, const char* param, std::vector<int32_t>* ids, BadRequest* bad) {
  ids->clear();
  for (const json& t : arr) {
    long long id = -1;
    if (!as_integer(t, &id) || id < 0 || id >= vocab)
      return fail(bad, "'" + std::string(param) + "' token ids must be integers in [0, " + std::to_string(vocab) + ")",
                  param);
    ids->push_back((int32_t)id);
  }
  return true;
}

std::string token_texts(const RequestContext& rc, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    format::Str t = rc.tokenizer->token_text(id);
    s.append(t.data, t.size);
  }
  return s;
}

// The messages of a chat request; content is a string or an array of text parts.
bool parse_messages(const json& body, std::vector<ChatMessage>* out, BadRequest* bad) {
  const json* msgs = field(body, "messages");
  if (!msgs || !msgs->is_array() || msgs->empty()) return fail(bad, "'messages' must be a non-empty array", "messages");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return fail(bad, "'" + where + "' must be an object", "messages");
    for (auto f = m.begin(); f != m.end(); ++f)
      if (f.key() != "role" && f.key() != "content" && f.key() != "name")
        return fail(bad, "unknown field '" + f.key() + "' in '" + where + "'", "messages");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) return fail(bad, "'" + where + ".role' must be a string", "messages");
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for the system role
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      return fail(bad, "'" + where + ".role' must be system, developer, user or assistant", "messages");
    const json* content = field(m, "content");
    if (content && content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content && content->is_array()) {
      for (const json& part : *content) {
        const json* type = part.is_object() ? field(part, "type") : nullptr;
        const json* text = part.is_object() ? field(part, "text") : nullptr;
        if (!type || !type->is_string())
          return fail(bad, "each part of '" + where + ".content' must be an object with a 'type'", "messages");
        if (type->get<std::string>() != "text")
          return fail(bad, "'" + where + ".content' parts of type '" + type->get<std::string>() +
                               "' are not supported (only 'text')",
                      "messages");
        if (!text || !text->is_string()) return fail(bad, "a text part needs a string 'text'", "messages");
        msg.content += text->get<std::string>();
      }
    } else if (content || msg.role != "assistant") {
      return fail(bad, "'" + where + ".content' must be a string or an array of text parts", "messages");
    }
    out->push_back(std::move(msg));
  }
  return true;
}

// Renders chat messages to token ids (specials put in as ids) and the prompt as text.
bool chat_prompt(const RequestContext& rc, const std::vector<ChatMessage>& msgs, std::vector<int32_t>* ids,
                 std::string* text, std::vector<std::string>* stops, int* dropped, BadRequest* bad) {
  std::vector<PromptPiece> pieces;
  render_chat(rc.chat_form, msgs, rc.special, &pieces, stops);
  ids->clear();
  text->clear();
  *dropped = 0;
  if (rc.add_bos && rc.special.bos >= 0 && !(!pieces.empty() && pieces[0].token == rc.special.bos)) {
    ids->push_back(rc.special.bos);
    format::Str t = rc.tokenizer->token_text(rc.special.bos);
    text->append(t.data, t.size);
  }
  for (const PromptPiece& p : pieces) {
    if (p.token >= 0) {
      ids->push_back(p.token);
      format::Str t = rc.tokenizer->token_text(p.token);
      text->append(t.data, t.size);
      continue;
    }
    std::vector<int32_t> part;
    int lost = 0;
    if (!encode_text(rc, p.text, false, &part, &lost, "messages", bad)) return false;
    ids->insert(ids->end(), part.begin(), part.end());
    *dropped += lost;
    *text += p.text;
  }
  return true;
}

}  // namespace

int json_depth(const char* p, size_t n, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

bool encode_text(const RequestContext& rc, const std::string& text, bool add_bos, std::vector<int32_t>* ids,
                 int* dropped, const char* param, BadRequest* bad) {
  ids->clear();
  *dropped = 0;
  if (add_bos && rc.special.bos >= 0) ids->push_back(rc.special.bos);
  const size_t at = ids->size();
  std::vector<int32_t> buf;
  int skipped = 0;
  Status st = host::tokenize(*rc.tokenizer, text.data(), text.size(), EncodeOptions(), &buf, &skipped);  // exact, sized
  if (!st.ok()) return fail(bad, std::string("cannot tokenize '") + param + "': " + st.message(), param);
  ids->insert(ids->begin() + (long)at, buf.begin(), buf.end());
  *dropped = skipped;
  return true;
}

bool parse_generation(const RequestContext& rc, const std::string& text, bool chat, ParsedRequest* out,
                      BadRequest* bad) {
  json body;
  if (!parse_object(text, &body, bad) || !check_fields(body, kCommonFields, chat ? &kChatFields : &kCompletionFields, bad))
    return false;
  ParsedRequest& r = *out;
  GenRequest& g = r.gen;
  if (!get_string(body, "model", nullptr, bad) || !get_string(body, "user", nullptr, bad) ||
      !get_bool(body, "stream", &r.stream, bad))
    return false;
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) return fail(bad, "'stream_options' must be an object", "stream_options");
    for (auto it = so->begin(); it != so->end(); ++it)
      if (it.key() != "include_usage") return fail(bad, "unknown field '" + it.key() + "' in 'stream_options'", "stream_options");
    const json* iu = field(*so, "include_usage");
    if (iu && !iu->is_boolean()) return fail(bad, "'stream_options.include_usage' must be true or false", "stream_options");
    r.include_usage = iu && iu->get<bool>();
  }
  if (const json* rf = field(body, "response_format")) {
    const json* type = rf->is_object() ? field(*rf, "type") : nullptr;
    if (!type || !type->is_string()) return fail(bad, "'response_format' must be an object with a string 'type'", "response_format");
    if (type->get<std::string>() != "text")
      return fail(bad, "'response_format' type '" + type->get<std::string>() + "' is not supported (only 'text')",
                  "response_format");
  }

  // Sampling: absent fields take qtf run's defaults.
  SamplerOptions& so = g.sampler;
  double temperature = so.temperature, top_p = so.top_p, min_p = so.min_p, repeat_penalty = so.repeat_penalty;
  double presence = 0, frequency = 0;
  long long top_k = so.top_k, repeat_last_n = so.repeat_last_n, seed = 0, n = 1, best_of = 0;
  long long max_tokens = std::min(128, rc.max_tokens_cap);  // the default stays within --max-tokens
  const bool has_seed = field(body, "seed") != nullptr;
  if (!get_number(body, "temperature", 0, 100, &temperature, bad) || !get_number(body, "top_p", 0, 1, &top_p, bad) ||
      !get_number(body, "min_p", 0, 1, &min_p, bad) ||
      !get_number(body, "repeat_penalty", 0.01, 100, &repeat_penalty, bad) ||
      !get_number(body, "presence_penalty", -2, 2, &presence, bad) ||
      !get_number(body, "frequency_penalty", -2, 2, &frequency, bad) ||
      !get_int(body, "top_k", 0, 1 << 30, &top_k, bad) || !get_int(body, "repeat_last_n", 0, 1 << 16, &repeat_last_n, bad) ||
      !get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, bad) ||
      !get_int(body, "max_tokens", 1, rc.max_tokens_cap, &max_tokens, bad) ||
      (chat && !get_int(body, "max_completion_tokens", 1, rc.max_tokens_cap, &max_tokens, bad)) ||
      !get_int(body, "n", 1, kMaxChoices, &n, bad) || (!chat && !get_int(body, "best_of", 1, kMaxChoices, &best_of, bad)))
    return false;
  if (best_of && best_of != n) return fail(bad, "'best_of' must equal 'n' (each choice is returned)", "best_of");
  so.temperature = (float)temperature;
  // top_p 0 and min_p 1 keep only the most likely token (the sampler's ranges are open there).
  so.top_p = top_p > 0 ? (float)top_p : 1e-6f;
  so.min_p = min_p < 1 ? (float)min_p : 0.999999f;
  so.repeat_penalty = (float)repeat_penalty;
  so.top_k = (int)top_k;
  so.repeat_last_n = (int)repeat_last_n;
  r.seeded = has_seed;
  so.seed = has_seed ? (uint64_t)seed : ((uint64_t)std::random_device{}() << 32) ^ std::random_device{}();
  g.max_tokens = (int)max_tokens;
  g.presence_penalty = (float)presence;
  g.frequency_penalty = (float)frequency;
  g.eos = rc.special.eos;
  r.n = (int)n;

  if (const json* lb = field(body, "logit_bias")) {
    if (!lb->is_object() || lb->size() > (size_t)kMaxLogitBias)
      return fail(bad, "'logit_bias' must be an object of at most " + std::to_string(kMaxLogitBias) +
                           " token ids (as strings) with biases in [-100, 100]",
                  "logit_bias");
    for (auto it = lb->begin(); it != lb->end(); ++it) {
      const std::string& k = it.key();
      char* end = nullptr;
      const long id = k.empty() || k.size() > 9 ? -1 : std::strtol(k.c_str(), &end, 10);
      if (id < 0 || id >= rc.vocab || *end != 0)
        return fail(bad, "'logit_bias' key '" + k + "' is not a token id in [0, " + std::to_string(rc.vocab) + ")",
                    "logit_bias");
      if (!it->is_number() || !std::isfinite(it->get<double>()) || std::fabs(it->get<double>()) > 100)
        return fail(bad, "'logit_bias' values must be numbers in [-100, 100]", "logit_bias");
      g.logit_bias.push_back({(int32_t)id, it->get<float>()});
    }
  }

  // Log probabilities: completions' logprobs is a count of alternatives (0-5); chat's is true/false with
  // top_logprobs (0-20).
  if (const json* lp = field(body, "logprobs")) {
    if (chat) {
      if (!lp->is_boolean()) return fail(bad, "'logprobs' must be true or false", "logprobs");
      if (lp->get<bool>()) g.logprobs = 0;
    } else {
      long long k = 0;
      if (lp->is_boolean() || !as_integer(*lp, &k) || k < 0 || k > 5)
        return fail(bad, "'logprobs' must be an integer in [0, 5]", "logprobs");
      g.logprobs = (int)k;
    }
  }
  if (chat && field(body, "top_logprobs")) {
    long long k = 0;
    if (!get_int(body, "top_logprobs", 0, kMaxTopLogprobs, &k, bad)) return false;
    if (g.logprobs < 0) return fail(bad, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
    g.logprobs = (int)k;
  }

  if (const json* st = field(body, "stop")) {
    // Read in place: nothing of the request is copied (a deep value would be copied recursively).
    const bool arr = st->is_array();
    if (arr && st->size() > 4) return fail(bad, "'stop' may hold at most 4 sequences", "stop");
    for (size_t i = 0; i < (arr ? st->size() : 1); ++i) {
      const json& s = arr ? (*st)[i] : *st;
      if (!s.is_string() || s.get_ref<const std::string&>().empty() || s.get_ref<const std::string&>().size() > 256)
        return fail(bad, "'stop' must be a non-empty string (at most 256 bytes) or an array of them", "stop");
      g.stop.push_back(s.get<std::string>());
    }
  }

  const char* prompt_param = chat ? "messages" : "prompt";
  if (!chat) {
    if (!get_bool(body, "echo", &r.echo, bad)) return false;
    if (r.echo && g.logprobs >= 0) return fail(bad, "'echo' with 'logprobs' is not supported", "echo");
    if (const json* sfx = field(body, "suffix"))
      if (!sfx->is_string() || !sfx->get_ref<const std::string&>().empty())
        return fail(bad, "'suffix' is not supported", "suffix");
    const json* p = field(body, "prompt");
    if (!p) return fail(bad, "'prompt' is required", "prompt");
    const json* one = p;
    if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) one = &(*p)[0];
    if (one->is_string()) {
      r.prompt_text = one->get<std::string>();
      if (!encode_text(rc, r.prompt_text, rc.add_bos, &g.prompt, &r.dropped_bytes, "prompt", bad)) return false;
    } else if (one->is_array() && !one->empty() && (*one)[0].is_number()) {
      if (!token_ids(*one, rc.vocab, "prompt", &g.prompt, bad)) return false;
      r.prompt_text = token_texts(rc, g.prompt);
    } else if (p->is_array() && p->size() > 1 && (*p)[0].is_string()) {
      return fail(bad, "one prompt per request is supported (use 'n' for several completions)", "prompt");
    } else {
      return fail(bad, "'prompt' must be a string, an array of one string, or an array of token ids", "prompt");
    }
  } else {
    std::vector<ChatMessage> msgs;
    std::vector<std::string> turn_stops;
    if (!parse_messages(body, &msgs, bad) ||
        !chat_prompt(rc, msgs, &g.prompt, &r.prompt_text, &turn_stops, &r.dropped_bytes, bad))
      return false;
    for (std::string& s : turn_stops) g.stop.push_back(std::move(s));
  }
  if (g.prompt.empty()) return fail(bad, "the prompt has no tokens in this model's vocabulary", prompt_param);
  if ((int)g.prompt.size() >= rc.n_ctx)
    return fail(bad, "the prompt is " + std::to_string(g.prompt.size()) + " tokens; this server's context holds " +
                         std::to_string(rc.n_ctx) + " (prompt + generated)",
                prompt_param);
  return true;
}

bool parse_tokenize(const RequestContext& rc, const std::string& text, std::vector<int32_t>* ids, int* dropped,
                    BadRequest* bad) {
  json body;
  static const std::set<std::string> fields = {"content", "add_special", "model"};
  if (!parse_object(text, &body, bad) || !check_fields(body, fields, nullptr, bad)) return false;
  bool add_special = false;
  const json* content = field(body, "content");
  if (!content || !content->is_string()) return fail(bad, "'content' must be a string", "content");
  if (!get_bool(body, "add_special", &add_special, bad) || !get_string(body, "model", nullptr, bad)) return false;
  return encode_text(rc, content->get<std::string>(), add_special && rc.add_bos, ids, dropped, "content", bad);
}

bool parse_detokenize(const RequestContext& rc, const std::string& text, std::string* out, BadRequest* bad) {
  json body;
  static const std::set<std::string> fields = {"tokens", "model"};
  if (!parse_object(text, &body, bad) || !check_fields(body, fields, nullptr, bad)) return false;
  const json* tokens = field(body, "tokens");
  std::vector<int32_t> ids;
  if (!tokens || !tokens->is_array()) return fail(bad, "'tokens' must be an array of token ids", "tokens");
  if (!token_ids(*tokens, rc.vocab, "tokens", &ids, bad) || !get_string(body, "model", nullptr, bad)) return false;
  *out = token_texts(rc, ids);
  return true;
}

bool parse_apply_template(const RequestContext& rc, const std::string& text, std::string* prompt, BadRequest* bad) {
  json body;
  static const std::set<std::string> fields = {"messages", "model"};
  if (!parse_object(text, &body, bad) || !check_fields(body, fields, nullptr, bad)) return false;
  std::vector<ChatMessage> msgs;
  if (!parse_messages(body, &msgs, bad)) return false;
  std::vector<PromptPiece> pieces;
  std::vector<std::string> stops;
  render_chat(rc.chat_form, msgs, rc.special, &pieces, &stops);
  prompt->clear();
  for (const PromptPiece& p : pieces) {
    if (p.token < 0) *prompt += p.text;
    else prompt->append(rc.tokenizer->token_text(p.token).data, rc.tokenizer->token_text(p.token).size);
  }
  return true;
}

}  // namespace qtf::serve
