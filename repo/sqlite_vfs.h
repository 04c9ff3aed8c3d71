// repo/sqlite_vfs.h — a SQLite VFS that routes the index's writes through an Env.
//
// SQLite does its own file I/O. To put the index under the same fault layer as
// the packs (tests/fault_env.h, docs/RELIABILITY.md "Power loss"), an EnvVfs
// wraps SQLite's default VFS ("unix") and sends every call that changes the disk
// — creating a file, write, truncate, fsync (plus the directory fsync SQLite
// does after creating a WAL or journal), delete — through the Env; reads,
// locking, the WAL's shared memory and everything else stay with the default
// VFS. Only a Repository opened with OpenOptions::env uses it: production opens
// the index with SQLite's own VFS, untouched.
//
// Each file it opens for writing gets a second descriptor (from Env::open) for
// those writes. Closing a descriptor drops the process's POSIX locks on the
// file, so it is closed only after SQLite's own; REQUIRES: no other connection
// in this process has the same database open while an EnvVfs connection does.
// Thread-safety: registration is thread-safe (SQLite's); a file is used by its
// connection's thread.
#pragma once

#include <memory>
#include <string>

#include <sqlite3.h>

#include "common/env.h"
#include "common/error.h"

namespace blkvault::repo::sql {

class EnvVfs {
 public:
  // Registers a VFS named "blkvault-env-<n>" over SQLite's default VFS.
  // `env` must outlive it; so must every connection opened with name().
  static Result<std::unique_ptr<EnvVfs>> create(Env& env);
  EnvVfs(const EnvVfs&) = delete;
  EnvVfs& operator=(const EnvVfs&) = delete;
  ~EnvVfs();  // unregisters

  const char* name() const { return name_.c_str(); }
  Env& env() const { return env_; }
  sqlite3_vfs* base() const { return base_; }

 private:
  EnvVfs(Env& env, sqlite3_vfs* base, std::string name);
  Env& env_;
  sqlite3_vfs* base_;
  std::string name_;
  sqlite3_vfs vfs_{};
};

}  // namespace blkvault::repo::sql
