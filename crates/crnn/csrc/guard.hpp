// Shared by the shim's translation units: errors never unwind into Rust. `guarded` runs a
// body and turns any C++ exception into return code 1 with its message copied into `error`
// (NUL-terminated, truncated to `error_len`).
#pragma once

#include <cstring>
#include <exception>
#include <string>

namespace crnn_shim {
inline void report(const std::string &message, char *error, size_t error_len) {
  if (error_len > 0) {
    std::strncpy(error, message.c_str(), error_len - 1);
    error[error_len - 1] = '\0';
  }
}

template <typename F> int guarded(char *error, size_t error_len, F &&body) {
  try {
    body();
    return 0;
  } catch (const std::exception &e) {
    report(e.what(), error, error_len);
    return 1;
  } catch (...) {
    report("unknown C++ exception", error, error_len);
    return 1;
  }
}
}  // namespace crnn_shim
