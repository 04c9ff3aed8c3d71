#include "kernel/ioctl_transport.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>

namespace blkvault::kernel {

Result<std::unique_ptr<SystemTransport>> SystemTransport::open(const std::string& control_path) {
  int fd = ::open(control_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return fail_errno("opening " + control_path);
  return std::unique_ptr<SystemTransport>(new SystemTransport(UniqueFd(fd)));
}

int SystemTransport::call(unsigned long request, void* arg) {
  int ret = ::ioctl(fd_.get(), request, arg);
  if (ret < 0) return -errno;
  return ret;
}

}  // namespace blkvault::kernel
