// tests/kernel/loop_device_support.h — a loop device for tests that need a real
// block device (root and loop support required; attach() says why not otherwise,
// for GTEST_SKIP). Used by tests/kernel and tests/snapshot.
#pragma once

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/unique_fd.h"

namespace blkvault::kernel {

// A read-write loop device over a backing file, with its node in a private directory.
class LoopDevice {
 public:
  // Returns "" on success, or why it could not be set up.
  std::string attach(const std::string& backing, const std::string& node) {
    UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    if (!control) return std::string("/dev/loop-control: ") + std::strerror(errno);
    for (int attempt = 0; attempt < 10; ++attempt) {
      int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
      if (n < 0) return std::string("LOOP_CTL_GET_FREE: ") + std::strerror(errno);
      ::unlink(node.c_str());
      if (::mknod(node.c_str(), S_IFBLK | 0600, makedev(7, n)) != 0) return std::string("mknod: ") + std::strerror(errno);
      UniqueFd loop(::open(node.c_str(), O_RDWR | O_CLOEXEC));
      if (!loop) return std::string("opening loop node: ") + std::strerror(errno);
      UniqueFd file(::open(backing.c_str(), O_RDWR | O_CLOEXEC));
      if (!file) return std::string("opening backing file: ") + std::strerror(errno);
      struct loop_config config {};
      config.fd = static_cast<uint32_t>(file.get());
      config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
      if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) == 0) {
        loop_ = std::move(loop);
        return "";
      }
      if (errno != EBUSY) return std::string("LOOP_CONFIGURE: ") + std::strerror(errno);
    }
    return "no free loop device";
  }

 private:
  UniqueFd loop_;  // AUTOCLEAR detaches the device once every fd is closed
};

}  // namespace blkvault::kernel
