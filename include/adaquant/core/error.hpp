#pragma once
// The error contract: every public entry point validates its arguments before touching data and
// throws adaquant::error. what() names the function, the argument and the reason; code() tells
// the category so callers can branch without parsing text. No entry point returns garbage for
// bad input; where a kernel detects a problem mid-stream (a NaN in quantize()), the output
// buffer's contents are unspecified after the throw.

#include <stdexcept>
#include <string>
#include <string_view>

namespace adaquant {

enum class errc {
  invalid_argument,  // a parameter outside its documented domain (bits, learning rate, options)
  non_finite,        // NaN or +-inf where finite numbers are required
  shape_mismatch,    // sizes or ranks that do not agree
  empty_input,       // an empty tensor or calibration set
  infeasible,        // a budget no choice can meet
  corrupt_data,      // a malformed model, data or CSV file
};

[[nodiscard]] constexpr std::string_view to_string(errc c) noexcept {
  switch (c) {
    case errc::invalid_argument:
      return "invalid argument";
    case errc::non_finite:
      return "non-finite value";
    case errc::shape_mismatch:
      return "shape mismatch";
    case errc::empty_input:
      return "empty input";
    case errc::infeasible:
      return "infeasible";
    case errc::corrupt_data:
      return "corrupt data";
  }
  return "unknown";
}

class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message)
      : std::runtime_error("adaquant: " + message), code_(code) {}
  [[nodiscard]] errc code() const noexcept { return code_; }

 private:
  errc code_;
};

namespace detail {
// `where` is "function: argument"; `why` the broken rule, e.g. "bits must be in [2, 16], got 17".
[[noreturn]] inline void fail(errc code, std::string_view where, std::string_view why) {
  std::string msg(where);
  msg += ": ";
  msg += why;
  throw error(code, msg);
}
}  // namespace detail
}  // namespace adaquant
