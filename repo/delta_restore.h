// repo/delta_restore.h — restore onto a target that already holds something
// close to the image: read the target chunk by chunk, hash it, and write only
// the chunks that differ (zeros where the image has a hole). A rollback of a
// disk changed a little since a generation writes about that little.
//
// The caller may say that only some byte ranges can differ (`compare_only`:
// the CBT's changed blocks since that generation, when the target is the
// tracked device itself and its CBT is continuous): chunks outside them are
// neither read nor compared. That is a promise the caller makes; the CBT
// audit (docs/RESTORE.md) is what keeps it honest.
//
// Thread-safety: `restore_delta` runs `threads` workers; the source and sink
// must allow concurrent calls (pread/pwrite).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "repo/repository.h"

namespace blkvault::repo {

// What the target holds now. Called from several threads.
class RestoreSource {
 public:
  virtual ~RestoreSource() = default;
  // Reads exactly data.size() bytes at offset (REQUIRES: within the image's size).
  virtual Status read_at(uint64_t offset, std::span<uint8_t> data) = 0;
  // True when [offset, offset+length) is known to read as zeros without
  // reading it (a hole of a sparse file); false when unknown.
  virtual bool reads_as_zeros(uint64_t /*offset*/, uint64_t /*length*/) { return false; }
};

struct ByteRange {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
};

struct DeltaOptions {
  size_t threads = 2;
  // When set: only chunks overlapping these ranges may differ (see above).
  std::optional<std::vector<ByteRange>> compare_only;
};

struct DeltaStats {
  uint64_t bytes_compared = 0;  // read from the target and hashed
  uint64_t bytes_skipped = 0;   // not read: outside compare_only
  uint64_t bytes_written = 0;   // chunks of data written
  uint64_t bytes_zeroed = 0;    // holes of the image the target did not have as zeros
  uint64_t chunks_written = 0;  // chunks written or zeroed
};

}  // namespace blkvault::repo
