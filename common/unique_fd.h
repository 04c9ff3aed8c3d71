// common/unique_fd.h — an owning, move-only file descriptor.
//
// close() is the happy path and reports its error (close can report a deferred
// write error on some filesystems); the destructor is the backstop and ignores it.
// Thread-safety: none; one owner at a time.
#pragma once

#include <unistd.h>

#include <utility>

#include "common/error.h"

namespace blkvault {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Closes and reports the result; the object is empty afterwards either way.
  Status close(std::string_view what) {
    int fd = std::exchange(fd_, -1);
    if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) return fail_errno(what);
    return {};
  }

 private:
  int fd_ = -1;
};

}  // namespace blkvault
