#include "common/direct_read.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "common/file_io.h"

namespace blkvault {
namespace {

bool direct_aligned(uint64_t offset, std::span<const uint8_t> data) {
  return offset % kDirectAlign == 0 && data.size() % kDirectAlign == 0 &&
         reinterpret_cast<uintptr_t>(data.data()) % kDirectAlign == 0;
}

}  // namespace

DirectReads::DirectReads(int fd) {
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  int d;
  do {
    d = ::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  } while (d < 0 && errno == EINTR);
  if (d >= 0) direct_ = UniqueFd(d);
}

Result<size_t> DirectReads::pread(int buffered, std::span<uint8_t> data, uint64_t offset, std::string_view what,
                                  bool allow_short) const {
  if (direct_.valid() && !data.empty() && direct_aligned(offset, data)) {
    ssize_t n;
    do {
      n = ::pread(direct_.get(), data.data(), data.size(), static_cast<off_t>(offset));
    } while (n < 0 && errno == EINTR);
    if (n >= 0 && static_cast<size_t>(n) == data.size()) {
      direct_bytes_.fetch_add(data.size(), std::memory_order_relaxed);
      return data.size();
    }
    // A failure, or a short read (the end of the file, or a device that split
    // the request): the buffered descriptor answers, with its own error.
  }
  return pread_full(buffered, data, offset, what, allow_short);
}

}  // namespace blkvault
