// kernel/sim_device.h — device-side helpers of the simulated module: the CBT
// geometry rule, per-block fingerprints, and the fstat stamp that lets a take skip
// rescanning an unchanged image file.
//
// Thread-safety: stateless functions; concurrent calls on one fd are fine (pread).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "kernel/sim_state.h"

namespace blkvault::kernel::sim {

// The module's tracking-block rule (SEMANTICS.md §3): 64 KiB, doubled while more
// than 2,097,152 blocks would be needed, at most 64 MiB; count rounded up.
struct Geometry {
  uint64_t capacity_bytes = 0;  // whole 512-byte sectors only
  uint32_t block_size = 0;
  uint32_t block_count = 0;
};
Geometry derive_geometry(uint64_t device_size_bytes);

// The diff-area chunk size (SEMANTICS.md §2 TAKE): 256 KiB, doubled while there
// would be more than 2^40 chunks.
uint32_t derive_chunk_size(uint64_t capacity_bytes);

uint64_t block_fingerprint(std::span<const uint8_t> data);

// Fingerprints of blocks [first, first + count) of a device of `capacity_bytes`
// (the last block may be partial). For regular files, blocks lying entirely in a
// hole (SEEK_DATA/SEEK_HOLE) are fingerprinted without being read. Adds the
// number of bytes actually read to *bytes_read.
Result<std::vector<uint64_t>> fingerprint_blocks(int fd, const std::string& path, uint64_t capacity_bytes,
                                                 uint32_t block_size, uint32_t first, uint32_t count,
                                                 bool regular_file, uint64_t* bytes_read);

// fstat of an open device, with `trusted` set when ctime is older than the
// clock (read before the fstat) by more than the timestamp granularity.
Result<FileStamp> take_stamp(int fd, const std::string& path);

// Whether a recorded stamp proves the file unchanged given a fresh one.
inline bool stamp_proves_unchanged(const FileStamp& recorded, const FileStamp& now) {
  return recorded.trusted && recorded.size == now.size && recorded.mtime_ns == now.mtime_ns &&
         recorded.ctime_ns == now.ctime_ns && recorded.ino == now.ino;
}

// Size in bytes of a device (regular file or block device) open at fd.
Result<uint64_t> device_size(int fd, const std::string& path);

}  // namespace blkvault::kernel::sim
