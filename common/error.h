// common/error.h — the error vocabulary shared by every blkvault module.
//
// Errors are values. Every fallible function returns Result<T> (or Status for
// no value); nothing below app/ throws, prints or exits. An Error carries:
//   - a code that app/ maps to a documented exit status (docs/CLI.md),
//   - the errno that caused it, when one did (0 otherwise),
//   - a message chain, outermost context first, that reads as one sentence:
//       "reading CBT map of /dev/sdb: ioctl TRACKER_READ_CBT_MAP: Operation not permitted".
// Each layer adds what it was doing with wrap(); app/ prints
// "blkvault: <message>" and exits with exit_status_for(code).
//
// Thread-safety: plain values; safe to copy and move between threads.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace blkvault {

// Classifies a failure by who must act on it. Keep in step with
// app/exit_codes.h and docs/CLI.md when adding a code.
enum class ErrorCode {
  kInvalidArgument,  // the user's input is wrong (option, size, id, config value)
  kNotFound,         // a named thing does not exist (device, generation, repository)
  kIo,               // the operating system refused an I/O operation
  kNoSpace,          // ENOSPC / EDQUOT on a write
  kCorrupt,          // stored data or metadata failed a check
  kUnsupported,      // a format version or ABI this build does not understand
  kLocked,           // another process holds the repository lock
  kPermission,       // EACCES / EPERM, or root needed
  kModule,           // the kernel module is missing, wrong version, or refused a call
  kBusy,             // the target is in use (mounted device, device in another snapshot)
  kCancelled,        // SIGINT/SIGTERM asked us to stop
  kKey,              // wrong passphrase, or the repository's key is missing
  kCbtAudit,         // a backup committed, but its CBT audit found a write the CBT map missed
  kInternal,         // a broken invariant: a bug in blkvault
};

// A short stable name for the code ("io", "corrupt", ...), used in --json output.
std::string_view error_code_name(ErrorCode code);

class [[nodiscard]] Error {
 public:
  Error(ErrorCode code, std::string message, int sys_errno = 0)
      : code_(code), sys_errno_(sys_errno), message_(std::move(message)) {}

  // An Error for a failed system call: "<what>: <strerror(err)>", classified by
  // errno (ENOSPC -> kNoSpace, EACCES -> kPermission, ENOENT -> kNotFound, ...).
  static Error from_errno(std::string_view what, int err = errno);

  ErrorCode code() const { return code_; }
  int sys_errno() const { return sys_errno_; }
  const std::string& message() const { return message_; }

  // Prepends "<context>: " to the message. Use the gerund form of what the
  // caller was doing: wrap("reading pack 3f2a…").
  Error& wrap(std::string_view context) & {
    message_ = std::string(context) + ": " + message_;
    return *this;
  }
  Error&& wrap(std::string_view context) && { return std::move(wrap(context)); }

  // Replaces the code, keeping errno and message (e.g. an I/O error that a
  // caller knows means "not found").
  Error&& with_code(ErrorCode code) && {
    code_ = code;
    return std::move(*this);
  }

 private:
  ErrorCode code_;
  int sys_errno_;
  std::string message_;
};

template <class T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(ErrorCode code, std::string message, int sys_errno = 0) {
  return tl::unexpected<Error>(Error(code, std::move(message), sys_errno));
}
inline tl::unexpected<Error> fail(Error error) { return tl::unexpected<Error>(std::move(error)); }
inline tl::unexpected<Error> fail_errno(std::string_view what, int err = errno) {
  return tl::unexpected<Error>(Error::from_errno(what, err));
}

// Propagation helpers for Result-returning code:
//   BLKVAULT_TRY(status_expr);                 // returns the error upward
//   BLKVAULT_TRY_ASSIGN(auto x, result_expr);  // binds the value or returns the error
#define BLKVAULT_CONCAT_INNER(a, b) a##b
#define BLKVAULT_CONCAT(a, b) BLKVAULT_CONCAT_INNER(a, b)
#define BLKVAULT_TRY(expr)                                           \
  do {                                                               \
    auto&& _blkvault_r = (expr);                                     \
    if (!_blkvault_r) return ::tl::unexpected(std::move(_blkvault_r).error()); \
  } while (0)
#define BLKVAULT_TRY_ASSIGN_IMPL(tmp, decl, expr)          \
  auto tmp = (expr);                                       \
  if (!tmp) return ::tl::unexpected(std::move(tmp).error()); \
  decl = std::move(*tmp)
#define BLKVAULT_TRY_ASSIGN(decl, expr) \
  BLKVAULT_TRY_ASSIGN_IMPL(BLKVAULT_CONCAT(_blkvault_r_, __LINE__), decl, expr)

}  // namespace blkvault
