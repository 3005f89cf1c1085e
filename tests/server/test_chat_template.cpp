// Chat templates (tools/server/chat_template.cpp): the forms recognised from real models' template texts,
// and the prompt each renders, with markers as single tokens where the vocabulary has them.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "chat_template.h"

using namespace qtf::serve;

namespace {

// Excerpts of the chat_template texts the models ship (tokenizer_config.json / GGUF).
const std::map<std::string, ChatForm> kTemplates = {
    {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
     "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
     ChatForm::chatml},  // Qwen2, SmolLM2
    {"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}...{{ bos_token + '[INST] "
     "<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'].strip() + ' [/INST]' }}",
     ChatForm::llama2},  // Llama 2 chat
    {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
     "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}",
     ChatForm::mistral},  // Mistral 7B Instruct
    {"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
     "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}",
     ChatForm::llama3},  // Llama 3
    {"{% for message in messages %}\\n{% if message['role'] == 'user' %}\\n{{ '<|user|>\\n' + message['content'] + "
     "eos_token }}\\n{% elif message['role'] == 'assistant' %}\\n{{ '<|assistant|>\\n'  + message['content'] + "
     "eos_token }}",
     ChatForm::zephyr},  // Zephyr, TinyLlama chat
    {"{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
     "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif "
     "message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}",
     ChatForm::phi3},  // Phi-3
    {"{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
     "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
     ChatForm::gemma},  // Gemma
};

std::string render(ChatForm f, const std::vector<ChatMessage>& msgs, const SpecialTokens& sp = {},
                   std::vector<std::string>* stops = nullptr) {
  std::vector<PromptPiece> pieces;
  std::vector<std::string> s;
  render_chat(f, msgs, sp, &pieces, stops ? stops : &s);
  std::string out;
  for (const PromptPiece& p : pieces) out += p.token >= 0 ? "<" + std::to_string(p.token) + ">" : p.text;
  return out;
}

const std::vector<ChatMessage> kChat = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}, {"user", "V"}};

}  // namespace

TEST_CASE("chat templates: real models' texts are recognised") {
  for (const auto& t : kTemplates) {
    bool recognised = false;
    CHECK(recognise_chat_template(t.first, &recognised) == t.second);
    CHECK(recognised);
  }
  bool recognised = true;  // Alpaca-style and empty text: the transcript, and said so
  CHECK(recognise_chat_template("{{ '### Instruction:\\n' + message['content'] }}", &recognised) ==
        ChatForm::transcript);
  CHECK(!recognised);
  for (const char* name : {"chatml", "llama2", "mistral", "llama3", "zephyr", "phi3", "gemma", "transcript"}) {
    ChatForm f;
    REQUIRE(chat_form_from_name(name, &f));
    CHECK(std::string(chat_form_name(f)) == name);
  }
  ChatForm f;
  CHECK(!chat_form_from_name("jinja", &f));
}

TEST_CASE("chat templates: each form's prompt") {
  std::vector<std::string> stops;
  CHECK(render(ChatForm::transcript, kChat, {}, &stops) ==
        "SYSTEM:\nS\n\nUSER:\nU\n\nASSISTANT:\nA\n\nUSER:\nV\n\nASSISTANT:\n");
  CHECK(stops == std::vector<std::string>{"\n\n"});
  CHECK(render(ChatForm::chatml, kChat, {}, &stops) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        "<|im_start|>user\nV<|im_end|>\n<|im_start|>assistant\n");
  CHECK(stops == std::vector<std::string>{"<|im_end|>"});
  CHECK(render(ChatForm::llama2, kChat) == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] V [/INST]");
  CHECK(render(ChatForm::mistral, kChat) == "<s>[INST] S\n\nU [/INST]A</s>[INST] V [/INST]");
  CHECK(render(ChatForm::llama3, {{"user", "U"}}) ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(render(ChatForm::zephyr, {{"system", "S"}, {"user", "U"}}) == "<|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\n");
  CHECK(render(ChatForm::phi3, {{"user", "U"}}, {}, &stops) == "<|user|>\nU<|end|>\n<|assistant|>\n");
  CHECK(stops == std::vector<std::string>{"<|end|>"});
  CHECK(render(ChatForm::gemma, kChat) ==
        "<s><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n<start_of_turn>user\nV"
        "<end_of_turn>\n<start_of_turn>model\n");
  CHECK(render(ChatForm::mistral, {{"system", "only"}}) == "<s>[INST] only [/INST]");  // system alone: a user turn
}

TEST_CASE("chat templates: markers and BOS/EOS become special tokens when the vocabulary has them") {
  SpecialTokens sp;
  sp.bos = 1;
  sp.eos = 2;
  sp.find = [](const std::string& m) { return m == "<|im_start|>" ? 7 : m == "<|im_end|>" ? 8 : -1; };
  CHECK(render(ChatForm::chatml, {{"user", "U"}}, sp) == "<7>user\nU<8>\n<7>assistant\n");
  CHECK(render(ChatForm::llama2, {{"user", "U"}, {"assistant", "A"}}, sp) == "<1>[INST] U [/INST] A <2>");
  CHECK(render(ChatForm::llama3, {{"user", "U"}}, sp).find("<|eot_id|>") != std::string::npos);  // not in vocab: text
}
