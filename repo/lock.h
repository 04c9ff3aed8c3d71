// repo/lock.h — the repository's writer lock.
//
// One writer at a time.
// A local repository: an exclusive flock(2) on "<repo>/lock". flock locks die
// with their process, so a lock left by a killed blkvault is free at once (no
// stale-lock timeout needed on a local filesystem). The holder writes its pid,
// host and start time into the file, so a refused writer can say who holds it:
//   "repository /srv/repo is locked by pid 1234 on host db1 since 2026-11-25T03:00:00Z".
// Object storage (acquire_object): the object "lock", created with a
// no-overwrite put (If-None-Match: *), so of several hosts exactly one gets it.
// It names its holder the same way, plus a random token and the time. A
// process that dies cannot delete it, so the holder proves it is alive: every
// refresh_s it publishes "lock-refresh/<token>-<unix ms>" (and deletes the one
// before). A lock whose newest sign of life is older than stale_s is stale:
// the next writer deletes it (and its refresh objects) and takes the lock. A
// lock whose holder is a process of this very host (same host key: a hash of
// machine id and host name) that no longer exists is broken at once. The
// times are the holder's clock: hosts must keep their clocks within a fraction
// of stale_s (NTP). S3 has no conditional delete, so two writers breaking the
// same stale lock at the same moment could in theory both believe they hold
// it; the token is re-read just before the delete to make that window small.
// Backups on object storage share the repository (acquire_shared_object):
// each publishes its own marker "locks/backup-<token>" (same content and
// heartbeat as the lock), then looks at "lock": when an exclusive holder
// (prune, gc, index rebuild, key changes) has it, the backup removes its
// marker and waits. The exclusive holder, once it has "lock", waits until no
// live marker is left (stale ones it deletes, as a stale lock). Marker first
// then lock, lock first then markers: with the store's read-after-write
// consistency at least one of the two sees the other, so gc never runs while
// a backup that may reference what it deletes is still going, and a waiting
// gc is not starved by backups that start after it.
// Prune and gc take "lock" with backups_alongside (its content says
// "backups: alongside"): they exclude every other exclusive holder but neither
// wait for running backups nor hold new ones off; gc instead condemns what it
// would delete and deletes it once the backups that were running then have
// ended (docs/FORMAT.md, "Removing generations and gc").
// Readers take no lock: the SQLite index's WAL snapshot isolation keeps them
// consistent while a writer commits.
// Thread-safety: a RepoLock is owned by one thread; it is move-only (an object
// lock's refresher runs on its own thread until the RepoLock is destroyed).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault::repo {

class Storage;

// A live backup marker: its name ("locks/backup-<token>") and its holder.
struct LiveBackup {
  std::string name;
  std::string holder;
};

struct ObjectLockOptions {
  double stale_s = 1800;   // 30 min without a sign of life: stale
  double refresh_s = 300;  // the holder's heartbeat period
  // Both overridable with BLKVAULT_LOCK_STALE_S (refresh: a quarter of it).
  static ObjectLockOptions from_environment();
};

class RepoLock {
 public:
  // Takes the lock, waiting up to wait_seconds (0: fail at once) for another
  // holder. kLocked when it cannot be had; kIo for other failures.
  // `name_host`: write the host name into the lock file (not for encrypted
  // repositories, whose files must not name the host).
  // An "s3:" repository: acquire_object on a storage opened from the environment.
  static Result<RepoLock> acquire(const std::string& repo_dir, double wait_seconds, bool name_host = true);
  // Who holds the lock now ("pid 1234 on host db1 since …"), or nullopt when
  // it is free. Does not take it. An "s3:" repository: object_holder.
  static Result<std::optional<std::string>> holder(const std::string& repo_dir);
  // The backups in progress holding shared markers (object_backups); always
  // empty for a local repository, whose backups hold the lock itself.
  static Result<std::vector<std::string>> backups(const std::string& repo_dir);

  // The object lock in `storage` (which must outlive the RepoLock). The
  // kLocked message names storage.description() and the holder; a stale lock
  // that was broken is reported through `broke` (its holder), when given.
  // Once it has the lock it waits (within the same wait_seconds) for running
  // backups to finish: kLocked "repository … has a backup in progress: pid …
  // on host … since …[ and N more]" when they do not (the lock is released
  // again). Stale backup markers are deleted, their holders appended to
  // `broke_backups` when given. With `backups_alongside` (prune, gc) it does
  // not wait for backups, and backups do not wait for it.
  static Result<RepoLock> acquire_object(Storage& storage, double wait_seconds, bool name_host,
                                         const ObjectLockOptions& options, std::string* broke = nullptr,
                                         std::vector<std::string>* broke_backups = nullptr,
                                         bool backups_alongside = false);
  // A backup's shared hold: its marker "locks/backup-<token>", refreshed like
  // the lock; waits up to wait_seconds while "lock" is held other than
  // backups_alongside (kLocked naming the holder), breaking a stale lock
  // (reported through `broke`).
  static Result<RepoLock> acquire_shared_object(Storage& storage, double wait_seconds, bool name_host,
                                                const ObjectLockOptions& options, std::string* broke = nullptr);
  // The holder, "(stale)" appended when it is; nullopt when free.
  static Result<std::optional<std::string>> object_holder(Storage& storage, const ObjectLockOptions& options);
  // The backup markers alive now; stale ones are deleted on the way (their
  // holders appended to `broke`, when given).
  static Result<std::vector<LiveBackup>> live_backups(Storage& storage, const ObjectLockOptions& options,
                                                      std::vector<std::string>* broke = nullptr);
  // The holders of the backup markers, "(stale: …)" appended to stale ones.
  static Result<std::vector<std::string>> object_backups(Storage& storage, const ObjectLockOptions& options);

  // kLocked when an object lock or marker of this RepoLock was deleted by
  // another process that found it stale (this process stalled for longer
  // than stale_s): what was done under it must not be published. Always OK
  // for a flock.
  Status check_held() const;

  RepoLock(RepoLock&&) noexcept;
  RepoLock& operator=(RepoLock&&) noexcept;
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;
  ~RepoLock();  // closing the fd releases the flock; an object lock is deleted

  // Holds `other` as long as this lock (released after it).
  void also_hold(RepoLock other);

  struct ObjectLock;

 private:
  explicit RepoLock(UniqueFd fd);
  explicit RepoLock(std::unique_ptr<ObjectLock> object);
  std::shared_ptr<Storage> owned_storage_;  // acquire() of an "s3:" address: outlives object_
  UniqueFd fd_;
  std::unique_ptr<ObjectLock> object_;
  std::unique_ptr<RepoLock> also_;
};

}  // namespace blkvault::repo
