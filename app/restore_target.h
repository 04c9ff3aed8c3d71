// app/restore_target.h — where `restore` writes: a new sparse file, or an
// existing file or block device, with the safety checks an administrator expects.
//
// Rules (docs/CLI.md, restore):
//   - a path that does not exist becomes a new file (O_EXCL, 0600), sized to the
//     image and sparse where the image is zero; on failure or interruption it is
//     deleted, never left half-written;
//   - an existing regular file or block device that holds data (any non-zero
//     byte in its first MiB, or a non-empty file) is overwritten only with --force;
//   - a block device must be at least as large as the image and not in use: it is
//     opened O_EXCL, which the kernel refuses while it is mounted or held by
//     another exclusive opener (LVM, md, a mount), and it is checked against
//     /proc/self/mountinfo for a clear message;
//   - anything else (a directory, a symlink, a character device) is refused.
// Thread-safety: read_at/write_at/zero may be called concurrently (pread/pwrite).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault::app {

class RestoreTarget {
 public:
  static Result<RestoreTarget> open(const std::string& path, uint64_t image_size, bool force);
  RestoreTarget(RestoreTarget&&) noexcept = default;
  RestoreTarget& operator=(RestoreTarget&&) = delete;
  RestoreTarget(const RestoreTarget&) = delete;
  ~RestoreTarget();

  Status write_at(uint64_t offset, std::span<const uint8_t> data);
  // Reads what the target holds (restore --delta compares before it writes).
  // REQUIRES: offset + data.size() <= the image size.
  Status read_at(uint64_t offset, std::span<uint8_t> data);
  // True when the range is a hole of a (sparse) file, by SEEK_DATA: it reads
  // as zeros. False for devices, for data, and when the filesystem cannot tell.
  bool is_hole(uint64_t offset, uint64_t length) const;
  // Makes [offset, offset+length) read as zeros: nothing to do on a new sparse
  // file; punch a hole (or write zeros) on an existing file; BLKZEROOUT on a device.
  Status zero(uint64_t offset, uint64_t length);
  // Sets the final size (files), fsyncs, closes. Until it succeeds, a new file is
  // removed by the destructor.
  Status commit();

  bool is_block_device() const { return block_device_; }
  const std::string& path() const { return path_; }

 private:
  RestoreTarget(std::string path, UniqueFd fd, uint64_t size, bool created, bool block_device)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size), created_(created), block_device_(block_device) {}

  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
  bool created_;
  bool block_device_;
  bool committed_ = false;
};

// The mount point of the block device `dev` (major:minor) if it is mounted, else "".
std::string mount_point_of(dev_t dev);

}  // namespace blkvault::app
