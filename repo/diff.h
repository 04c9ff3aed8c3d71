// repo/diff.h — what changed in one device between two generations, answered
// from the index alone (no pack is read).
//
// The index keeps each device's chunk map as intervals: a chunk_map row says
// "chunk C sits at index I from generation gen_from up to (not including)
// gen_to" (docs/FORMAT.md, "Index"). A chunk index differs between generations
// A < B exactly when the row valid at A and the row valid at B are not the same
// chunk; rows valid at both are the same row, so only rows valid at exactly one
// of the two are looked at: the cost is the changed chunks plus the rows still
// open (a range scan of the primary key), never a full map per generation.
//
// Granularity: chunks. A changed range covers whole chunks (clipped to the
// device's size) and may contain bytes that are equal in both generations: the
// index knows chunk ids, not bytes. When the sizes differ, the bytes between
// the two sizes are one more changed range (`resized`).
//
// Thread-safety: like Repository's methods (the index is behind its mutex).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "repo/repository.h"

namespace blkvault::repo {

struct DeviceDiff {
  std::string device;
  GenerationId from = 0;        // the first generation given (A)
  GenerationId to = 0;          // the second (B)
  uint64_t from_size_bytes = 0;
  uint64_t to_size_bytes = 0;
  uint64_t chunk_size = 0;
  struct Range {
    uint64_t offset_bytes = 0;
    uint64_t length_bytes = 0;
    bool operator==(const Range&) const = default;
  };
  std::vector<Range> ranges;    // sorted, non-overlapping, adjacent ones merged
  uint64_t changed_chunks = 0;  // chunk indices below both sizes whose chunk differs
  uint64_t changed_bytes = 0;   // sum of ranges' lengths
  bool resized() const { return from_size_bytes != to_size_bytes; }
};

// The chunk indices whose content differs between two chunk maps given as
// sorted (index, id) lists (an index not listed is zeros), for indices below
// `count`. Exposed for the reference model in the tests.
std::vector<uint64_t> differing_indices(const std::vector<std::pair<uint64_t, ChunkId>>& a,
                                        const std::vector<std::pair<uint64_t, ChunkId>>& b, uint64_t count);

// Turns changed chunk indices into merged byte ranges (see above).
// REQUIRES: `indices` sorted ascending.
std::vector<DeviceDiff::Range> diff_ranges(const std::vector<uint64_t>& indices, uint64_t chunk_size,
                                           uint64_t from_size, uint64_t to_size);

}  // namespace blkvault::repo
