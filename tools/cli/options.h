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

// If argv[*i] is a shared option, consumes it (and its value) and returns 1; returns 0 if not ours;
// returns -1 after printing an error for a bad value.
int parse_model_option(int argc, char** argv, int* i, ModelOptions* o);
extern const char kModelOptionsHelp[];

// Loads the model and the energy profiles, printing the error on failure.
bool load_model(const ModelOptions& o, host::LoadedModel* m);
bool load_profiles(const ModelOptions& o, energy::Profiles* ps, const energy::Profile** chosen);

// Numeric argument helpers: print an error and return false on a bad value.
bool parse_int(const char* flag, const char* s, long lo, long hi, int* out);
bool parse_float(const char* flag, const char* s, float* out);

}  // namespace qtf::cli
