// Command-line options shared by run, eval and bench: the model, the context switches, energy profiles.
#pragma once
#include <functional>

#include "energy/energy.h"
#include "host/session.h"

namespace qtf::cli {

struct ModelOptions {
  const char* model_path = nullptr;
  const char* lora_path = nullptr;  // --lora: an adapter file applied at load (docs/qllm.md)
  const char* tokenizer_path = nullptr;  // --tokenizer: a llama2.c checkpoint's tokenizer.bin
  bool gguf_f32 = false;                 // --gguf-f32: GGUF's quantized matrices (but Q4_0) as f32, not q8
  bool gguf_q4 = false;                  // --gguf-q4: those as q4 instead (half of q8's memory)
  bool mmap = true;
  ContextOptions ctx;
  const char* profile = "cpu_xeon";
  const char* profiles_file = nullptr;
};

// If argv[*i] is a shared option (the model and runtime switches, or -h/--help, which prints usage +
// the shared help), consumes it and its value. Returns kConsumed (go on), kNotShared (the command's own
// option), or an exit code: 0 after the help, 2 after printing an error for a bad value.
constexpr int kConsumed = -1, kNotShared = -2;
int parse_shared_option(int argc, char** argv, int* i, ModelOptions* o, const char* usage);
extern const char kModelOptionsHelp[];

// What a command's own option handler says about argv[i].
enum Parsed { kParsed, kBadValue, kUnknown };  // kBadValue: the error is printed already

// The command line as a command's own options see it: argv[i] is the option; it takes its values with
// value() or the typed helpers (each prints an error and returns false when the value is missing or bad).
struct Args {
  const char* command;  // "run", "eval", "bench": for messages
  int argc;
  char** argv;
  int at = 0;  // the option: argv[at]
  int i = 0;   // the last argument taken (its values follow it)
  const char* flag() const { return argv[at]; }
  bool is(const char* a, const char* b = nullptr) const;  // flag() equals a (or b)
  bool value(const char** v);
  bool int_value(long lo, long hi, int* out);
  bool float_value(float* out);
};

// The one argument loop of run, eval and bench: every argument is a shared option or one of the
// command's own, which `own` parses. Returns kConsumed when the command line is fine, else the exit
// code: 0 after --help, 2 after an error.
int parse_options(int argc, char** argv, const char* command, const char* usage, ModelOptions* mo,
                  const std::function<Parsed(Args&)>& own);

// Loads the model (any format qtf imports: a note on stderr when it was converted in memory) and the
// energy profiles, printing the error on failure.
bool load_model(const ModelOptions& o, host::LoadedModel* m);
bool load_profiles(const ModelOptions& o, energy::Profiles* ps, const energy::Profile** chosen);

// Numeric argument helpers: print an error and return false on a bad value.
bool parse_int(const char* flag, const char* s, long lo, long hi, int* out);
bool parse_mem_budget(const char* s, int64_t* out);  // --mem-budget BYTES|auto|0
bool parse_float(const char* flag, const char* s, float* out);

}  // namespace qtf::cli
