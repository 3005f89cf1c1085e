#include "chat_template.h"

#include <cctype>

namespace qtf::serve {
namespace {

struct FormName {
  ChatForm form;
  const char* name;
};
const FormName kForms[] = {{ChatForm::transcript, "transcript"}, {ChatForm::chatml, "chatml"},
                           {ChatForm::llama2, "llama2"},         {ChatForm::mistral, "mistral"},
                           {ChatForm::llama3, "llama3"},         {ChatForm::zephyr, "zephyr"},
                           {ChatForm::phi3, "phi3"},             {ChatForm::gemma, "gemma"}};

bool has(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// Builds the pieces: text is appended to the last text piece; markers become special tokens when the
// vocabulary has them.
class Builder {
 public:
  Builder(const SpecialTokens& sp, std::vector<PromptPiece>* out) : sp_(sp), out_(out) {}
  void text(const std::string& t) {
    if (t.empty()) return;
    if (out_->empty() || out_->back().token >= 0) out_->push_back({});
    out_->back().text += t;
  }
  void token(int id, const char* as_text) {
    if (id >= 0) out_->push_back({std::string(), id});
    else text(as_text);
  }
  void marker(const char* m) { token(sp_.find ? sp_.find(m) : -1, m); }
  void bos() { token(sp_.bos, "<s>"); }
  void eos() { token(sp_.eos, "</s>"); }

 private:
  const SpecialTokens& sp_;
  std::vector<PromptPiece>* out_;
};

// Forms without a system turn put the system text before the first user message.
std::vector<ChatMessage> fold_system(const std::vector<ChatMessage>& in) {
  std::vector<ChatMessage> out;
  std::string system;
  for (const ChatMessage& m : in) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n\n") + m.content;
      continue;
    }
    out.push_back(m);
    if (!system.empty() && m.role == "user") {
      out.back().content = system + "\n\n" + m.content;
      system.clear();
    }
  }
  if (!system.empty()) out.insert(out.begin(), ChatMessage{"user", system});
  return out;
}

}  // namespace

const char* chat_form_name(ChatForm f) {
  for (const FormName& n : kForms)
    if (n.form == f) return n.name;
  return "transcript";
}

bool chat_form_from_name(const std::string& name, ChatForm* out) {
  for (const FormName& n : kForms)
    if (name == n.name) {
      *out = n.form;
      return true;
    }
  return false;
}

ChatForm recognise_chat_template(const std::string& t, bool* recognised) {
  *recognised = true;
  if (has(t, "<|im_start|>")) return ChatForm::chatml;
  if (has(t, "<|start_header_id|>")) return ChatForm::llama3;
  if (has(t, "<start_of_turn>")) return ChatForm::gemma;
  if (has(t, "<|assistant|>") && has(t, "<|end|>")) return ChatForm::phi3;
  if (has(t, "<|assistant|>") && has(t, "<|user|>")) return ChatForm::zephyr;
  if (has(t, "[INST]")) return has(t, "<<SYS>>") ? ChatForm::llama2 : ChatForm::mistral;
  *recognised = false;
  return ChatForm::transcript;
}

const std::vector<std::string>& chat_markers() {
  static const std::vector<std::string> markers = {
      "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
      "<start_of_turn>", "<end_of_turn>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"};
  return markers;
}

void render_chat(ChatForm form, const std::vector<ChatMessage>& messages, const SpecialTokens& special,
                 std::vector<PromptPiece>* out, std::vector<std::string>* stops) {
  out->clear();
  stops->clear();
  Builder b(special, out);
  switch (form) {
    case ChatForm::transcript:  // the turns of a play script; a turn ends at a blank line
      for (const ChatMessage& m : messages) {
        std::string role = m.role;
        for (char& c : role) c = (char)std::toupper((unsigned char)c);
        b.text(role + ":\n" + m.content + "\n\n");
      }
      b.text("ASSISTANT:\n");
      stops->push_back("\n\n");
      break;
    case ChatForm::chatml:
      for (const ChatMessage& m : messages) {
        b.marker("<|im_start|>");
        b.text(m.role + "\n" + m.content);
        b.marker("<|im_end|>");
        b.text("\n");
      }
      b.marker("<|im_start|>");
      b.text("assistant\n");
      stops->push_back("<|im_end|>");
      break;
    case ChatForm::llama2: {  // <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U [/INST]
      std::string system;
      bool open = false;
      for (const ChatMessage& m : messages) {
        if (m.role == "system") {
          system += m.content;
        } else if (m.role == "user") {
          b.bos();
          b.text("[INST] ");
          if (!system.empty()) b.text("<<SYS>>\n" + system + "\n<</SYS>>\n\n");
          system.clear();
          b.text(m.content + " [/INST]");
          open = true;
        } else {
          b.text(" " + m.content + " ");
          b.eos();
          open = false;
        }
      }
      if (!open && !system.empty()) {  // a system message with no user turn after it
        b.bos();
        b.text("[INST] <<SYS>>\n" + system + "\n<</SYS>>\n\n [/INST]");
      }
      stops->push_back("</s>");
      break;
    }
    case ChatForm::mistral:  // <s>[INST] U [/INST]A</s>[INST] U [/INST]
      b.bos();
      for (const ChatMessage& m : fold_system(messages)) {
        if (m.role == "user") b.text("[INST] " + m.content + " [/INST]");
        else {
          b.text(m.content);
          b.eos();
        }
      }
      stops->push_back("</s>");
      break;
    case ChatForm::llama3:
      b.marker("<|begin_of_text|>");
      for (const ChatMessage& m : messages) {
        b.marker("<|start_header_id|>");
        b.text(m.role);
        b.marker("<|end_header_id|>");
        b.text("\n\n" + m.content);
        b.marker("<|eot_id|>");
      }
      b.marker("<|start_header_id|>");
      b.text("assistant");
      b.marker("<|end_header_id|>");
      b.text("\n\n");
      stops->push_back("<|eot_id|>");
      break;
    case ChatForm::zephyr:  // <|user|>\nU</s>\n<|assistant|>\n
      for (const ChatMessage& m : messages) {
        b.marker(("<|" + m.role + "|>").c_str());
        b.text("\n" + m.content);
        b.eos();
        b.text("\n");
      }
      b.marker("<|assistant|>");
      b.text("\n");
      stops->push_back("</s>");
      break;
    case ChatForm::phi3:  // <|user|>\nU<|end|>\n<|assistant|>\n
      for (const ChatMessage& m : messages) {
        b.marker(("<|" + m.role + "|>").c_str());
        b.text("\n" + m.content);
        b.marker("<|end|>");
        b.text("\n");
      }
      b.marker("<|assistant|>");
      b.text("\n");
      stops->push_back("<|end|>");
      break;
    case ChatForm::gemma:  // <bos><start_of_turn>user\nU<end_of_turn>\n<start_of_turn>model\n
      b.bos();
      for (const ChatMessage& m : fold_system(messages)) {
        b.marker("<start_of_turn>");
        b.text((m.role == "assistant" ? "model" : "user") + std::string("\n") + m.content);
        b.marker("<end_of_turn>");
        b.text("\n");
      }
      b.marker("<start_of_turn>");
      b.text("model\n");
      stops->push_back("<end_of_turn>");
      break;
  }
}

}  // namespace qtf::serve
