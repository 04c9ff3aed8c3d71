// cbt/changed_extents.h — turns a device's CBT read map into the byte extents an
// incremental backup must read (SEMANTICS.md §3, §6.6).
//
// A pure function: no I/O, no state. Thread-safe (nothing shared).
//
// Rules:
//   * The app records a Baseline (from_info) only after a backup of the device was
//     committed; it stores it as an opaque string (Baseline::encode).
//   * Full read when: no baseline; generation id differs; block size differs;
//     capacity differs; current snap_number <= stored snap_number (covers the 8-bit
//     wrap: the same generation with a smaller number must never be trusted);
//     map size != block_count or block_count inconsistent with capacity/block size.
//   * Otherwise a block is changed iff its map byte > stored snap_number.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/error.h"
#include "kernel/module.h"

namespace blkvault::cbt {

// What the app records after a successful backup of one device.
struct Baseline {
  kernel::Uuid generation_id{};
  uint8_t snap_number = 0;
  uint32_t block_size_bytes = 0;
  uint64_t capacity_bytes = 0;
  bool operator==(const Baseline&) const = default;

  // "cbt1 <uuid> <snap> <block_size> <capacity>"; decode refuses anything else
  // (kCorrupt, naming the text).
  std::string encode() const;
  static Result<Baseline> decode(std::string_view text);
};

// The baseline to record after a successful backup taken with `info`.
Baseline from_info(const kernel::CbtInfo& info);

struct ByteExtent {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  bool operator==(const ByteExtent&) const = default;
};

struct ChangedExtents {
  std::vector<ByteExtent> extents;  // sorted, non-overlapping, non-adjacent
  uint64_t changed_blocks = 0;      // CBT blocks whose byte > stored snap_number
  uint64_t changed_bytes = 0;       // those blocks, clipped to capacity
  uint64_t aligned_bytes = 0;       // sum of extents (after chunk alignment)
};

enum class FullReadReason {
  kNoBaseline,
  kGenerationChanged,
  kCapacityChanged,
  kBlockSizeChanged,
  kSnapNumberNotAdvanced,  // current <= stored: wrap or backwards
  kMapSizeMismatch,
};
std::string to_string(FullReadReason reason);

struct FullRead {
  FullReadReason reason;
};

using Plan = std::variant<ChangedExtents, FullRead>;

// REQUIRES: chunk_size_bytes > 0.
// Extents are the changed blocks, coalesced, aligned outward to chunk_size_bytes
// and clipped to info.capacity_bytes, then merged again.
Plan plan_read(const kernel::CbtInfo& info, std::span<const uint8_t> map,
               const std::optional<Baseline>& baseline, uint64_t chunk_size_bytes);

}  // namespace blkvault::cbt
