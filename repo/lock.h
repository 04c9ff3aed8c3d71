// repo/lock.h — the repository's writer lock.
//
// One writer at a time: an exclusive flock(2) on "<repo>/lock". flock locks die
// with their process, so a lock left by a killed blkvault is free at once (no
// stale-lock timeout needed on a local filesystem). The holder writes its pid,
// host and start time into the file, so a refused writer can say who holds it:
//   "repository /srv/repo is locked by pid 1234 on host db1 since 2026-11-25T03:00:00Z".
// Readers take no lock: the SQLite index's WAL snapshot isolation keeps them
// consistent while a writer commits.
// Thread-safety: a RepoLock is owned by one thread; it is move-only.
#pragma once

#include <optional>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault::repo {

class RepoLock {
 public:
  // Takes the lock, waiting up to wait_seconds (0: fail at once) for another
  // holder. kLocked when it cannot be had; kIo for other failures.
  // `name_host`: write the host name into the lock file (not for encrypted
  // repositories, whose files must not name the host).
  static Result<RepoLock> acquire(const std::string& repo_dir, double wait_seconds, bool name_host = true);
  // Who holds the lock now ("pid 1234 on host db1 since …"), or nullopt when
  // it is free. Does not take it.
  static Result<std::optional<std::string>> holder(const std::string& repo_dir);

  RepoLock(RepoLock&&) noexcept = default;
  RepoLock& operator=(RepoLock&&) noexcept = default;
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;
  ~RepoLock() = default;  // closing the fd releases the flock

 private:
  explicit RepoLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace blkvault::repo
