// saddle::Error and SADDLE_CHECK: every failure saddle reports, from a bad option to a malformed
// message from another rank, is thrown as one of these with a message that names the problem and
// the offending value. The CLI prints what() as one line on stderr and exits non-zero.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace saddle {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

}  // namespace saddle

// SADDLE_CHECK(cond, "what was wrong: ", value) — like TORCH_CHECK, but the message is exactly
// what the user sees (no source location or backtrace appended).
#define SADDLE_CHECK(cond, ...)                                     \
  do {                                                              \
    if (!(cond)) {                                                  \
      throw ::saddle::Error(::saddle::detail::concat(__VA_ARGS__)); \
    }                                                               \
  } while (0)
