// Chat prompts for `qtf serve`: the model's chat template (key `tokenizer.chat_template`, the Jinja text
// as found in GGUF or tokenizer_config.json) is not run; its text is recognised as one of the common
// forms and that form is rendered here. A model without a template, or with one not recognised, gets the
// plain transcript the shipped play-script models know ("USER:\n...\n\nASSISTANT:\n").
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace qtf::serve {

enum class ChatForm { transcript, chatml, llama2, mistral, llama3, zephyr, phi3, gemma };

const char* chat_form_name(ChatForm f);
bool chat_form_from_name(const std::string& name, ChatForm* out);

// The form a template's text is written in; *recognised = false (and transcript) when it is none of them.
ChatForm recognise_chat_template(const std::string& text, bool* recognised);

struct ChatMessage {
  std::string role;  // system, user or assistant
  std::string content;
};

// One piece of a rendered prompt: text to tokenize, or a special token put in as is (token >= 0).
struct PromptPiece {
  std::string text;
  int token = -1;
};

// The model's special tokens: bos/eos ids (-1: none) and the id of a marker such as "<|im_start|>" when
// the vocabulary holds it as one token (-1: the marker is written as text).
struct SpecialTokens {
  int bos = -1, eos = -1;
  std::function<int(const std::string&)> find;
};

// Renders the conversation followed by the opening of the assistant's turn. *stops receives the text
// that ends the assistant's turn in this form.
void render_chat(ChatForm form, const std::vector<ChatMessage>& messages, const SpecialTokens& special,
                 std::vector<PromptPiece>* out, std::vector<std::string>* stops);

// The markers render_chat may look up with SpecialTokens::find.
const std::vector<std::string>& chat_markers();

}  // namespace qtf::serve
