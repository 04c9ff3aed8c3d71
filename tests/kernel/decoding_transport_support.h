// tests/kernel/decoding_transport_support.h — a test IoctlTransport that plays
// the kernel side of /dev/veeamblksnap.
//
// It decodes each request the way the real module does: it dispatches on
// _IOC_NR(request) alone, reads the argument struct byte by byte at the offsets
// of SEMANTICS.md §0 (not through kernel/abi.h, so a layout mistake there shows
// up here), follows the user pointers inside it, answers from any Module, and
// encodes the answer back into the caller's buffers. It reproduces the module's
// conventions:
//   - TRACKER_COLLECT: NULL array = size probe; too small = ENOBUFS, count untouched;
//   - SNAPSHOT_COLLECT: NULL = probe; too small = ENODATA with count = capacity;
//   - SNAPSHOT_COLLECT_IMAGES: NULL = probe; too small = ENODATA with count = required;
//   - TRACKER_READ_CBT_MAP: ENODATA untracked, then the backing Module's EPERM
//     (not taken) or EFAULT (corrupted map), then EINVAL at offset >= blk_count;
//     returns the positive number of bytes copied;
//   - WAIT_EVENT: no event = ENOENT; only the event body's bytes are written;
//   - a NULL user pointer where the module copies = ENODATA; unknown nr = ENOTTY;
//   - MOD answers "standalone"/0x2, SETLOG succeeds, GET_SECTOR_STATE = ENOTTY.
// Errors of the backing Module are returned as -sys_errno() (EIO if it has none).
//
// It also records every request and flags any request code that differs from
// the header's full code for that nr (violations()), and nr 12, which must never
// be sent.
//
// Thread-safety: call() may be used concurrently if the backing Module allows it.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "kernel/ioctl_transport.h"
#include "kernel/module.h"

namespace blkvault::kernel::testing {

class DecodingTransport final : public IoctlTransport {
 public:
  // REQUIRES: `target` outlives the transport.
  explicit DecodingTransport(Module& target) : target_(target) {}

  int call(unsigned long request, void* arg) override;

  // The nr of every request received, in order.
  std::vector<unsigned> requests() const;
  // Human-readable descriptions of protocol violations seen so far (wrong full
  // request code for an nr, nr 12). Tests expect this to stay empty.
  std::vector<std::string> violations() const;

 private:
  int dispatch(unsigned nr, unsigned char* arg);

  Module& target_;
  mutable std::mutex mutex_;
  std::vector<unsigned> requests_;
  std::vector<std::string> violations_;
};

}  // namespace blkvault::kernel::testing
