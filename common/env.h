// common/env.h — the seam for the file-system calls that change what is on
// disk: creating and writing files, fsync, link, rename, unlink, mkdir and the
// fsync of a directory.
//
// The local repository backend (repo::LocalStorage) and the SQLite index (through
// the VFS shim in repo/sqlite_vfs.h) make every such call through an Env, so a
// test can swap in one that fails a chosen call or "loses power": drops every
// write not yet fsynced and every directory change whose directory was not
// fsynced (tests/fault_env.h, docs/RELIABILITY.md "Power loss"). Reads do not
// change the disk and go straight to the system (common/file_io.h).
//
// Every method returns an Error that names the file and keeps errno
// (Error::sys_errno()), so callers can tell EEXIST or ENOENT from a failure.
// Thread-safety: the real Env is stateless and may be used from any thread;
// an implementation must allow concurrent calls.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault {

class Env {
 public:
  Env() = default;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  virtual ~Env() = default;

  // The process's file system, unchanged: what production code uses. It holds
  // no state (a function-local static, never destroyed before its users).
  static Env& real();

  // open(2) with O_CLOEXEC added. Opens that can change the disk (O_CREAT,
  // O_TRUNC, write access) count as mutating calls for a fault-injecting Env.
  virtual Result<UniqueFd> open(const std::string& path, int flags, mode_t mode);
  // All of `data` at the file position (write_full), or at `offset`.
  virtual Status write(int fd, std::span<const uint8_t> data, std::string_view what);
  virtual Status pwrite(int fd, std::span<const uint8_t> data, uint64_t offset, std::string_view what);
  virtual Status truncate(int fd, uint64_t size_bytes, std::string_view what);
  // fsync(2): the file's data and size are durable once this succeeds.
  virtual Status fsync(int fd, std::string_view what);
  // fsync(2) of a directory: its entries (created, linked, renamed, unlinked
  // names) are durable once this succeeds.
  virtual Status fsync_dir(const std::string& dir);
  // link(2), rename(2), unlink(2), mkdir(2): a changed directory entry, durable
  // only after fsync_dir of the directory holding it.
  virtual Status link(const std::string& from, const std::string& to);
  virtual Status rename(const std::string& from, const std::string& to);
  virtual Status unlink(const std::string& path);
  virtual Status mkdir(const std::string& path, mode_t mode);
};

// The directory holding `path` ("." when it has none).
std::string parent_dir(std::string_view path);

}  // namespace blkvault
