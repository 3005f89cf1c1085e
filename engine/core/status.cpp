#include "core/status.h"

#include <cstdarg>
#include <cstdio>

namespace qtf {

const char* err_name(Err e) {
  switch (e) {
    case Err::ok: return "ok";
    case Err::invalid_argument: return "invalid argument";
    case Err::bad_magic: return "bad magic";
    case Err::bad_version: return "unsupported version";
    case Err::truncated: return "truncated";
    case Err::out_of_range: return "out of range";
    case Err::overflow: return "overflow";
    case Err::misaligned: return "misaligned";
    case Err::overlap: return "overlap";
    case Err::bad_dtype: return "bad dtype";
    case Err::bad_shape: return "bad shape";
    case Err::bad_checksum: return "bad checksum";
    case Err::duplicate_name: return "duplicate name";
    case Err::bad_utf8: return "bad utf-8";
    case Err::bad_value: return "bad value";
    case Err::missing: return "missing";
    case Err::io: return "i/o error";
    case Err::no_memory: return "out of memory";
    case Err::context_full: return "context full";
    case Err::unsupported: return "unsupported";
  }
  return "unknown error";
}

Status Status::error(Err code, const char* fmt, ...) {
  Status s;
  s.code_ = code == Err::ok ? Err::invalid_argument : code;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(s.message_, sizeof(s.message_), fmt, ap);
  va_end(ap);
  return s;
}

}  // namespace qtf
