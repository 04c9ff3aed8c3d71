// cbt/audit_sample.h — which chunks the CBT audit re-reads (docs/RESTORE.md,
// "Auditing the CBT"). An incremental backup trusts the CBT map for every chunk
// it does not read; the audit re-reads a random sample of those "unchanged"
// chunks from the snapshot and compares them with the parent generation, so a
// write the tracker missed is found instead of silently inherited for ever.
//
// A pure function of its arguments: the same seed and the same changed extents
// give the same sample on every machine (the generator and the draw are
// defined here, not by the standard library), so a run can be replayed.
// Thread-safe (nothing shared).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cbt/changed_extents.h"

namespace blkvault::cbt {

// The default sample rate, and the bounds on a device's sample size; see
// docs/RESTORE.md for the costs and the detection probability they give.
inline constexpr double kDefaultAuditPercent = 1.0;
inline constexpr uint64_t kAuditFloorChunks = 16;
inline constexpr uint64_t kAuditCapChunks = 1024;

// How many of `unchanged` chunks an audit at `percent` re-reads:
// 0 when percent is 0; every one at 100; otherwise ceil(unchanged * percent /
// 100) raised to kAuditFloorChunks and lowered to kAuditCapChunks, and never
// more than `unchanged`. REQUIRES: 0 <= percent <= 100.
uint64_t audit_sample_size(uint64_t unchanged, double percent);

// A 64-bit seed derived from the run's seed for the device at `position` (its
// place on the command line), so each device draws its own sample.
uint64_t audit_device_seed(uint64_t run_seed, uint64_t position);

struct AuditSample {
  uint64_t unchanged_chunks = 0;  // chunks of the device no changed extent touches
  std::vector<uint64_t> chunks;   // the sampled chunk indexes, ascending, distinct
};

// Draws audit_sample_size(unchanged, percent) distinct chunk indexes uniformly
// from the chunks of a device of `device_size` bytes that `changed` does not
// touch. REQUIRES: chunk_size > 0; `changed` sorted and non-overlapping (as
// plan_read returns them).
AuditSample sample_unchanged_chunks(std::span<const ByteExtent> changed, uint64_t device_size, uint64_t chunk_size,
                                    double percent, uint64_t seed);

}  // namespace blkvault::cbt
