// kernel/sim_state.h — the persistent state of the simulated veeamblksnap module
// (SimModule, kernel/sim_module.h) and the store that keeps it in a directory.
//
// The whole state (device registry, trackers with their CBT maps and block
// fingerprints, snapshots with their copy-on-write tables and event queues, fault
// switches) is one binary file, `<dir>/state`, replaced atomically (temp, fsync,
// rename, fsync dir) on every change. Layout (all integers little-endian; see
// docs/SIMULATION.md "State directory"):
//   header (48 bytes): magic "BVSIMST\0", u32 format version (1), u32 0,
//                      16-byte instance id (random, new when the file is created),
//                      u64 change counter, u64 payload length
//   payload:           the encoded State (encode_state below)
//   trailer:           u64 XXH3-64 of header + payload
// A reader refuses another magic, another format version, a bad length or a bad
// checksum (kCorrupt, naming the file).
//
// Every access holds flock on `<dir>/lock`: shared to read, exclusive to change.
// The decoded state is cached per StateStore and re-read only when the header's
// (instance id, change counter) differs, so the hot path (image reads) costs one
// open, flock and 48-byte pread of the header.
//
// Thread-safety: StateStore is thread-safe. Each access opens its own lock fd, so
// threads of one process exclude each other exactly like separate processes.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "kernel/module.h"

namespace blkvault::kernel::sim {

// Synthetic majors: registered regular files (devices and diff-storage files) and
// snapshot images.
inline constexpr uint32_t kFileMajor = 240;
inline constexpr uint32_t kImageMajor = 241;
inline constexpr uint64_t kDefaultDiffStorageMinimumSectors = 2097152;  // 1 GiB, the module default

struct RegistryEntry {
  DevId dev;
  std::string path;  // canonical
  bool block_device = false;
};

// What fstat said when the fingerprints were last made current. `trusted` is set
// only when the file's ctime was older than the clock by more than the timestamp
// granularity when the stat was taken, so that any later change must move ctime.
struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t ino = 0;
  bool trusted = false;
  bool operator==(const FileStamp&) const = default;
};

struct Tracker {
  DevId dev;
  uint64_t capacity_bytes = 0;
  uint32_t block_size = 0;
  uint32_t block_count = 0;
  Uuid generation{};
  uint8_t previous = 0;
  uint8_t active = 1;
  bool map_corrupted = false;  // a write mapped past block_count; reset at the next take
  std::vector<uint8_t> write_map;
  std::vector<uint8_t> read_map;
  std::optional<Uuid> owner;  // the snapshot this device belongs to
  bool fingerprints_valid = false;
  std::vector<uint64_t> fingerprints;  // XXH3-64 per CBT block, current contents
  FileStamp stamp;
};

struct StoredEvent {
  Event::Code code = Event::Code::kLowFreeSpace;
  int64_t time_ns = 0;
  uint64_t requested_sectors = 0;
  DevId device;
  int32_t error_code = 0;
};

struct StorageRange {
  DevId dev;
  uint64_t offset_sectors = 0;
  uint64_t count_sectors = 0;
};

struct ChunkLocation {
  DevId storage_dev;
  uint64_t sector = 0;
};

struct SnapDevice {
  DevId dev;
  // Filled at take:
  std::optional<uint32_t> image_minor;
  bool tracked = true;  // false: its tracker was removed before take (no copy-on-write)
  uint64_t capacity_bytes = 0;
  uint32_t block_size = 0;
  uint32_t chunk_size = 0;
  std::vector<uint64_t> fingerprints;      // at take
  std::map<uint64_t, ChunkLocation> cow;   // chunk index -> where its take-time copy is
  bool corrupted = false;
  int32_t corrupt_errno = 0;
};

struct Snapshot {
  Uuid id{};
  bool listed = true;  // false: dropped from the module's list (6.x list bug fault)
  bool taken = false;
  std::vector<SnapDevice> devices;  // in the order given to create
  std::vector<StorageRange> ranges;
  uint64_t cursor_range = 0;   // allocation point: ranges[cursor_range] + cursor_offset
  uint64_t cursor_offset = 0;  // sectors
  uint64_t capacity_sectors = 0;
  uint64_t filled_sectors = 0;
  uint64_t requested_sectors = 0;
  bool low_space = false;
  bool overflow = false;
  std::deque<StoredEvent> events;
};

struct ReadFault {
  DevId device;  // the original device whose image fails
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
};

struct Faults {
  bool list_bug = false;
  std::optional<uint64_t> storage_limit_sectors;  // cap on filled sectors per snapshot
  std::vector<ReadFault> read_errors;
  std::vector<DevId> lose_next_write;
  // Every write's bytes inside one of these ranges of its device raise no map
  // byte (the rest of the write does), until cleared.
  std::vector<ReadFault> lose_ranges;
};

struct State {
  std::vector<RegistryEntry> registry;
  uint32_t next_file_minor = 0;
  std::map<DevId, Tracker> trackers;
  std::vector<Snapshot> snapshots;  // creation order
  uint64_t diff_storage_minimum_sectors = kDefaultDiffStorageMinimumSectors;
  Faults faults;
  // Devices declared to be written only through SimModule::write() (`blkvault
  // sim outside-writes DEV none`): no fingerprints, no rescan at take, image
  // reads not checked against take-time contents. Not a fault: clear_faults()
  // keeps it.
  std::vector<DevId> sim_writes_only;
  bool writes_only_through_sim(DevId dev) const;

  const RegistryEntry* find_registered(DevId dev) const;
  const RegistryEntry* find_registered(const std::string& canonical_path) const;
  // Listed snapshot by id (unlisted ones cannot be found, like the real module).
  Snapshot* find_listed(const Uuid& id);
  const Snapshot* find_listed(const Uuid& id) const;
};

std::string encode_state(const State& state);
// `what` names the file in errors.
Result<State> decode_state(std::string_view payload, const std::string& what);

// A held flock; released when destroyed.
class FileLock {
 public:
  static Result<FileLock> acquire(const std::string& path, bool exclusive);
  FileLock(FileLock&&) = default;
  FileLock& operator=(FileLock&&) = default;

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class StateStore {
 public:
  // Creates `dir` (0700) and an empty state if missing.
  static Result<std::shared_ptr<StateStore>> open(const std::string& dir);

  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const std::string& dir() const { return dir_; }

  // Runs `fn` on the current state under a shared lock.
  template <class T>
  Result<T> read(const std::function<Result<T>(const State&)>& fn) {
    BLKVAULT_TRY_ASSIGN(FileLock lock, FileLock::acquire(lock_path(), false));
    BLKVAULT_TRY_ASSIGN(std::shared_ptr<const State> s, load_locked());
    return fn(*s);
  }

  // Runs `fn` on a copy of the state under an exclusive lock; the copy is saved
  // when `fn` sets its `dirty` flag, whether or not `fn` succeeds (a failed call
  // may still change state, e.g. TAKE without storage destroys the snapshot).
  template <class T>
  Result<T> update(const std::function<Result<T>(State&, bool& dirty)>& fn) {
    BLKVAULT_TRY_ASSIGN(FileLock lock, FileLock::acquire(lock_path(), true));
    BLKVAULT_TRY_ASSIGN(std::shared_ptr<const State> s, load_locked());
    State copy = *s;
    bool dirty = false;
    Result<T> r = fn(copy, dirty);
    if (dirty) BLKVAULT_TRY(save_locked(std::move(copy)));
    return r;
  }

  // The cached state; REQUIRES: the caller holds the lock (shared or exclusive).
  Result<std::shared_ptr<const State>> load_locked();
  std::string lock_path() const { return dir_ + "/lock"; }
  std::string state_path() const { return dir_ + "/state"; }

 private:
  explicit StateStore(std::string dir) : dir_(std::move(dir)) {}
  Status save_locked(State state);

  std::string dir_;
  std::mutex mu_;  // guards the cache below
  Uuid cached_instance_{};
  uint64_t cached_counter_ = 0;
  std::shared_ptr<const State> cached_;
};

}  // namespace blkvault::kernel::sim
