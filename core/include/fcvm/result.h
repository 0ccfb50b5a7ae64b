// Status and Result<T>: the error currency across plugin boundaries.
//
// A Status is either ok or carries an error code and a one-line message that names the
// thing that failed and, where one exists, the fix. Result<T> holds a T or a non-ok Status.
// Both are cheap to move and have no hidden allocation on the ok path.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

#include "fcvm/visibility.h"

namespace fcvm {

enum class Errc {
  ok = 0,
  invalid_argument,  // bad input from the user or caller
  not_found,         // a named thing does not exist
  already_exists,    // a named thing exists and must not
  unavailable,       // this host lacks a feature, tool or permission
  io,                // an OS call failed
  timeout,           // a deadline passed
  protocol,          // a peer spoke out of turn or sent malformed data
  internal,          // a bug: an invariant did not hold
};

FCVM_SDK_API const char* to_string(Errc code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return {}; }

  bool ok() const noexcept { return code_ == Errc::ok; }
  Errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // Prefixes the message with context ("storage-btrfs: " + message); keeps the code.
  Status with_context(const std::string& prefix) const {
    return ok() ? *this : Status(code_, prefix + message_);
  }

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

inline Status ok_status() { return {}; }
inline Status error(Errc code, std::string message) { return {code, std::move(message)}; }

// An io Status for the current errno: "<what>: <strerror(errno)>".
inline Status errno_status(const std::string& what, int err = errno) {
  return {Errc::io, what + ": " + std::strerror(err)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  // A non-ok Status only: a Result built from an ok Status is an internal error.
  Result(Status status)  // NOLINT(google-explicit-constructor)
      : v_(status.ok() ? Status(Errc::internal, "Result built from an ok Status")
                       : std::move(status)) {}

  bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return ok(); }

  // Precondition: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // The error; an ok Status when ok().
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace fcvm

// Returns early from a function returning Status or Result<U> when `expr` (a Status) fails.
// Each use gets its own variable name, so uses nest (inside a lambda in `expr`) unshadowed.
#define FCVM_RETURN_IF_ERROR(expr) \
  FCVM_RETURN_IF_ERROR_AS(FCVM_RESULT_CONCAT(fcvm_status_, __COUNTER__), expr)
#define FCVM_RETURN_IF_ERROR_AS(var, expr) \
  do {                                     \
    ::fcvm::Status var = (expr);           \
    if (!var.ok()) return var;             \
  } while (0)
#define FCVM_RESULT_CONCAT(a, b) FCVM_RESULT_CONCAT_INNER(a, b)
#define FCVM_RESULT_CONCAT_INNER(a, b) a##b
