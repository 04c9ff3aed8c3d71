// kernel/ioctl_transport.h — the seam between IoctlModule and ioctl(2).
//
// IoctlModule marshals every call into the ABI structs of kernel/abi.h and hands
// them to an IoctlTransport. SystemTransport issues the real ioctl on
// /dev/veeamblksnap; tests substitute a transport that decodes the structs
// (following their user-space pointers) and answers from another Module.
//
// Contract of call(): `request` is one of the abi::kIoctl* codes and `arg` points
// to the matching struct, which the callee may read and write (and whose embedded
// pointers it may follow) for the duration of the call only. Returns the ioctl's
// non-negative return value, or -errno on failure (never -1 with errno set).
//
// Thread-safety: implementations must allow concurrent call()s (the kernel does:
// an event thread blocks in WAIT_EVENT while another thread takes/reads).
#pragma once

#include <memory>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault::kernel {

class IoctlTransport {
 public:
  virtual ~IoctlTransport() = default;
  virtual int call(unsigned long request, void* arg) = 0;
};

// ioctl(2) on the control device. Only ever issues the blksnap requests it is
// given: the module dispatches on the ioctl nr alone, so a generic ioctl such as
// isatty()'s TCGETS (nr 1) would run TRACKER_REMOVE with garbage (SEMANTICS §0).
class SystemTransport final : public IoctlTransport {
 public:
  // Opens `control_path` O_RDWR|O_CLOEXEC. Errors: as Error::from_errno, with
  // the message "opening <path>: <strerror>".
  static Result<std::unique_ptr<SystemTransport>> open(const std::string& control_path);

  SystemTransport(const SystemTransport&) = delete;
  SystemTransport& operator=(const SystemTransport&) = delete;

  // Does not retry EINTR: it is returned as -EINTR, which WAIT_EVENT reports.
  int call(unsigned long request, void* arg) override;

 private:
  explicit SystemTransport(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace blkvault::kernel
