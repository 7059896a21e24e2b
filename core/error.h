// Error hierarchy of ndflow (DESIGN.md §9). Every failure a user can cause is
// one of these, with a message that names the op, the shapes/dtypes involved
// and what would be valid. Never abort inside the library.
//
//   NDF_CHECK(a.rank() == 2, ShapeError, "[matmul] expected a matrix, got ", a.shape());
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#define NDF_EXPORT __attribute__((visibility("default")))

namespace ndflow {

class NDF_EXPORT Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};
// Shapes that do not fit the op (broadcast failure, wrong rank, bad reshape).
class NDF_EXPORT ShapeError : public Error { using Error::Error; };
// DTypes the op does not support or that cannot be combined.
class NDF_EXPORT TypeError : public Error { using Error::Error; };
// Axes or indices out of range.
class NDF_EXPORT IndexError : public Error { using Error::Error; };
// Values that are out of the valid domain (negative sizes, bad attributes).
class NDF_EXPORT ValueError : public Error { using Error::Error; };
// Unknown op, kernel, attribute or name.
class NDF_EXPORT NotFoundError : public Error { using Error::Error; };
// A broken invariant inside ndflow: a bug, never the user's fault.
class NDF_EXPORT InternalError : public Error { using Error::Error; };
// A wait that ran past its deadline (a rendezvous recv whose peer never sent).
class NDF_EXPORT TimeoutError : public Error { using Error::Error; };
// Work given up because its step was cancelled or its owner went away.
class NDF_EXPORT CancelledError : public Error { using Error::Error; };

// Concatenates anything streamable into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename E, typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw E(str_cat(args...));
}

}  // namespace ndflow

// Throws `ErrorClass` with the concatenated message when `cond` is false. The
// message arguments are only evaluated on failure.
#define NDF_CHECK(cond, ErrorClass, ...)                   \
  do {                                                     \
    if (!(cond)) [[unlikely]]                              \
      ::ndflow::fail<::ndflow::ErrorClass>(__VA_ARGS__);   \
  } while (0)
