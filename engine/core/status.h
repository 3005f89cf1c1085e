// Errors are values: every fallible engine call returns a Status with a code and a one-line message.
// No exceptions anywhere in the engine (it is built with -fno-exceptions -fno-rtti).
#pragma once
#include <cstddef>

namespace qtf {

enum class Err : int {
  ok = 0,
  invalid_argument,
  bad_magic,
  bad_version,
  truncated,
  out_of_range,
  overflow,
  misaligned,
  overlap,
  bad_dtype,
  bad_shape,
  bad_checksum,
  duplicate_name,
  bad_utf8,
  bad_value,
  missing,
  io,
  no_memory,
  context_full,
  unsupported,
};

const char* err_name(Err e);

class Status {
 public:
  Status() = default;
  static Status success() { return Status(); }
  // printf-style message; truncated to fit, always NUL-terminated. No %zu (newlib-nano lacks it):
  // cast sizes to unsigned long.
  static Status error(Err code, const char* fmt, ...)
#if defined(__GNUC__)
      __attribute__((format(printf, 2, 3)))
#endif
      ;
  bool ok() const { return code_ == Err::ok; }
  Err code() const { return code_; }
  const char* message() const { return code_ == Err::ok ? "ok" : message_; }

 private:
  Err code_ = Err::ok;
  char message_[224] = {0};
};

// Propagate an error Status to the caller.
#define QTF_TRY(expr)                        \
  do {                                       \
    ::qtf::Status qtf_try_status_ = (expr);  \
    if (!qtf_try_status_.ok()) return qtf_try_status_; \
  } while (0)

}  // namespace qtf
