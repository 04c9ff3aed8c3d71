// common/direct_read.h — reads that bypass the page cache where the file allows.
//
// A backup reads each snapshot image once, front to back, and never again.
// Through the page cache that read costs a copy per byte, fills memory the
// host's applications would rather keep, and on a sparse file (the simulated
// module's devices) makes the kernel zero a fresh page for every hole. A
// DirectReads keeps a second descriptor of the same file opened with O_DIRECT
// and sends it every read whose offset, length and buffer are aligned to
// kDirectAlign; any other read, and a direct read that fails or comes back
// short, goes through the caller's ordinary descriptor instead, so errors and
// end-of-file results are exactly the buffered path's.
//
// Thread-safety: pread() may be called concurrently (pread only).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault {

// Offsets, lengths and buffers of direct reads are multiples of this: the page
// size, and at least the logical block size of every disk Linux supports.
inline constexpr size_t kDirectAlign = 4096;

template <class T>
struct PageAlignedAllocator {
  using value_type = T;
  PageAlignedAllocator() = default;
  template <class U>
  PageAlignedAllocator(const PageAlignedAllocator<U>&) {}  // NOLINT: allocator rebinding
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kDirectAlign))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(kDirectAlign)); }
  bool operator==(const PageAlignedAllocator&) const { return true; }
};

// A byte buffer whose data() is kDirectAlign-aligned.
using AlignedBytes = std::vector<uint8_t, PageAlignedAllocator<uint8_t>>;

class DirectReads {
 public:
  // Opens `fd`'s file again with O_DIRECT (through /proc/self/fd). When the
  // file or its filesystem refuses, every read goes through `fd`.
  explicit DirectReads(int fd);

  // pread_full of `buffered` (common/file_io.h), through the direct descriptor
  // when it can.
  Result<size_t> pread(int buffered, std::span<uint8_t> data, uint64_t offset, std::string_view what,
                       bool allow_short = false) const;

  bool enabled() const { return direct_.valid(); }
  // Bytes read through the direct descriptor so far.
  uint64_t direct_bytes() const { return direct_bytes_.load(std::memory_order_relaxed); }

 private:
  UniqueFd direct_;
  mutable std::atomic<uint64_t> direct_bytes_{0};
};

}  // namespace blkvault
