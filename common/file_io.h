// common/file_io.h — small POSIX I/O helpers that loop over short reads and
// writes and retry EINTR, returning Error values that name the file.
//
// These are the only raw read/write loops in blkvault; everything else calls them.
// Thread-safety: stateless; pread/pwrite variants may be used concurrently on one fd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault {

// open(2) with O_CLOEXEC added; the error names `path`.
Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode = 0600);

// Reads exactly data.size() bytes at `offset`. A short file is kCorrupt
// ("unexpected end of file") unless allow_short is set, in which case the number
// of bytes read is returned.
Result<size_t> pread_full(int fd, std::span<uint8_t> data, uint64_t offset, std::string_view what,
                          bool allow_short = false);
Status pwrite_full(int fd, std::span<const uint8_t> data, uint64_t offset, std::string_view what);
Status write_full(int fd, std::span<const uint8_t> data, std::string_view what);

// fsync(2) of a file, and of the directory holding a path (to make a rename or
// create durable).
Status fsync_fd(int fd, std::string_view what);
Status fsync_dir(const std::string& dir);

// Whole small files. write_file_atomic writes to "<path>.tmp-<pid>-<n>" opened
// O_EXCL, fsyncs it, renames it over `path` and fsyncs the directory.
Result<std::string> read_file(const std::string& path);
Status write_file_atomic(const std::string& path, std::string_view contents, mode_t mode = 0600);

// Size in bytes of a regular file or block device.
Result<uint64_t> fd_size(int fd, std::string_view what);

// "a1b2…" lower-case hex of bytes, and the reverse (false on bad input).
std::string to_hex(std::span<const uint8_t> bytes);
bool from_hex(std::string_view hex, std::span<uint8_t> out);

}  // namespace blkvault
