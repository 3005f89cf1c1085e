// Command-line options shared by run, eval and bench: the model, the context switches, energy profiles.
#pragma once
#include "energy/energy.h"
#include "host/session.h"

namespace qtf::cli {

struct ModelOptions {
  const char* model_path = nullptr;
  bool mmap = true;
  ContextOptions ctx;
  const char* profile = "cpu_xeon";
  const char* profiles_file = nullptr;
};

// The start of every running command's argument loop. If argv[*i] is a shared option (the model and
// runtime switches, or -h/--help, which prints usage + the shared help), consumes it and its value.
// Returns kConsumed (go on), kNotShared (the command's own option), or an exit code: 0 after the help,
// 2 after printing an error for a bad value.
constexpr int kConsumed = -1, kNotShared = -2;
int parse_shared_option(int argc, char** argv, int* i, ModelOptions* o, const char* usage);
extern const char kModelOptionsHelp[];

// Loads the model and the energy profiles, printing the error on failure.
bool load_model(const ModelOptions& o, host::LoadedModel* m);
bool load_profiles(const ModelOptions& o, energy::Profiles* ps, const energy::Profile** chosen);

// Numeric argument helpers: print an error and return false on a bad value.
bool parse_int(const char* flag, const char* s, long lo, long hi, int* out);
bool parse_float(const char* flag, const char* s, float* out);

}  // namespace qtf::cli
