// repo/storage.h — the seam between the repository engine and where its files live.
//
// The engine reads and writes only named files through Storage, so a backend
// (local directory today; S3 object storage and a network server later) can be
// added without touching the engine. Names are relative, '/'-separated, made of
// [A-Za-z0-9._-] segments ("packs/3f/3f2a…", "manifests/000042-…", "config").
//
// Contract, every backend:
//   - put() and a committed Writer publish atomically and durably: a reader sees
//     the whole file or nothing, and after success it survives a crash/power loss;
//   - they never overwrite: an existing name fails with kInvalidArgument
//     ("… already exists"), so immutable files stay immutable;
//   - a Writer that is destroyed without commit() leaves nothing visible;
//   - get() of a missing name is kNotFound.
// Thread-safety: a Storage may be used from several threads at once; one Writer
// is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/env.h"
#include "common/error.h"

namespace blkvault::repo {

class Storage {
 public:
  // A file being written: append in order, then commit to publish it.
  class Writer {
   public:
    virtual ~Writer() = default;
    virtual Status append(std::span<const uint8_t> data) = 0;
    virtual uint64_t size() const = 0;
    // Makes the file visible and durable under its name. REQUIRES: called once.
    virtual Status commit() = 0;
  };

  virtual ~Storage() = default;
  // "/srv/backup/repo" or "s3:…": for messages.
  virtual std::string description() const = 0;

  virtual Status put(std::string_view name, std::span<const uint8_t> data) = 0;
  virtual Result<std::unique_ptr<Writer>> create(std::string_view name) = 0;
  virtual Result<std::vector<uint8_t>> get(std::string_view name) = 0;
  // Exactly `length` bytes at `offset`; a short file is kCorrupt.
  virtual Result<std::vector<uint8_t>> get_range(std::string_view name, uint64_t offset, uint64_t length) = 0;
  // The same into `out`, resized to `length`: its capacity is reused, so a
  // caller reading range after range into one buffer allocates (and faults
  // in) that buffer once, not once per read. On failure `out` holds anything.
  // The default reads through get_range().
  virtual Status get_range_into(std::string_view name, uint64_t offset, uint64_t length, std::vector<uint8_t>& out) {
    BLKVAULT_TRY_ASSIGN(out, get_range(name, offset, length));
    return {};
  }
  virtual Result<uint64_t> size(std::string_view name) = 0;
  virtual Result<bool> exists(std::string_view name) = 0;
  // Names under `prefix` ("packs/"), sorted; recursive.
  virtual Result<std::vector<std::string>> list(std::string_view prefix) = 0;
  // Leftovers of writes that never published (a killed writer's temp files),
  // under `prefix`, sorted; remove() deletes them. Only the repository's lock
  // holder may remove them (another writer's may be in flight otherwise).
  virtual Result<std::vector<std::string>> list_unpublished(std::string_view prefix) = 0;
  // Removing a missing name is not an error.
  virtual Status remove(std::string_view name) = 0;
};

// Checks a storage name against the rules above (kInvalidArgument otherwise),
// so no name can climb out of the repository ("..", absolute paths, empty segments).
Status check_name(std::string_view name);

// A directory on a local filesystem. Directories are created 0700, files 0600;
// symlinks are never followed (O_NOFOLLOW, and a symlinked directory in a name
// is refused); writes go to "<name>.tmp-<pid>-<n>" opened O_EXCL, are fsynced,
// linked into place without replacing (link(2), then the temp is unlinked) and
// the directory is fsynced (and each directory on the way is fsynced in its
// parent, once per LocalStorage).
// Every call that changes the disk goes through `env` (common/env.h; the real
// file system when null), which must outlive the storage.
// REQUIRES: `root` exists (repository init creates it).
class LocalStorage final : public Storage {
 public:
  static Result<std::unique_ptr<LocalStorage>> open(const std::string& root, Env* env = nullptr);

  std::string description() const override { return root_; }
  Status put(std::string_view name, std::span<const uint8_t> data) override;
  Result<std::unique_ptr<Writer>> create(std::string_view name) override;
  Result<std::vector<uint8_t>> get(std::string_view name) override;
  Result<std::vector<uint8_t>> get_range(std::string_view name, uint64_t offset, uint64_t length) override;
  Status get_range_into(std::string_view name, uint64_t offset, uint64_t length, std::vector<uint8_t>& out) override;
  Result<uint64_t> size(std::string_view name) override;
  Result<bool> exists(std::string_view name) override;
  Result<std::vector<std::string>> list(std::string_view prefix) override;
  Result<std::vector<std::string>> list_unpublished(std::string_view prefix) override;
  Status remove(std::string_view name) override;

  const std::string& root() const { return root_; }

 private:
  LocalStorage(std::string root, Env& env) : root_(std::move(root)), env_(env) {}
  Result<std::string> path_for(std::string_view name, bool create_dirs);
  Result<std::vector<std::string>> list_names(std::string_view prefix, bool unpublished);

  std::string root_;
  Env& env_;
  std::mutex mu_;                       // guards durable_dirs_
  std::set<std::string> durable_dirs_;  // directories made durable in their parent by this storage
};

}  // namespace blkvault::repo
