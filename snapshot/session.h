// snapshot/session.h — one snapshot of a set of devices, held for one backup.
//
// Lifecycle (SEMANTICS.md §4): Session::open cleans up orphans recorded by
// earlier killed runs, creates ONE snapshot over all devices, answers the
// initial low_free_space event with a preallocated diff-storage file, records
// the snapshot as ours (so a later run can destroy it if we die), starts the
// event thread, takes the snapshot, and opens each device's image read-only.
// close() — or, as a backstop, the destructor — stops and joins the event thread,
// closes the images, destroys the snapshot and only then deletes the storage
// files and the record. It runs on every path: success, error return, exception,
// and SIGINT/SIGTERM (the app's handler sets the CancelToken; callers unwind).
//
// The event thread answers each low_free_space event with a new storage file of
// at least the requested size while the total stays within limit_bytes, and
// records a `corrupted` event as the failure of that device.
//
// Thread-safety: the accessors may be called from any thread while the session
// is open; open/close are single-threaded. The Module must outlive the Session.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/cancel.h"
#include "common/error.h"
#include "common/logger.h"
#include "kernel/module.h"

namespace blkvault::snapshot {

struct SessionOptions {
  std::string diff_storage_dir;           // where storage files are created (REQUIRES: exists)
  // When set: a whole block device given over to difference storage, used raw
  // (handed to the module in slices as it asks, from sector 0 up) instead of
  // files in diff_storage_dir. Its contents are overwritten.
  std::string diff_storage_device;
  uint64_t initial_bytes = 1ull << 30;    // first storage file (at least what the module asks)
  uint64_t limit_bytes = 16ull << 30;     // total storage never exceeds this
  uint32_t event_poll_ms = 100;           // WAIT_EVENT timeout per loop
  std::string state_dir;                  // holds snapshots.json, the ownership record
};

struct SessionDevice {
  std::string path;
  kernel::DevId dev;
  kernel::DevId image;
  kernel::CbtInfo cbt;  // as of the take
  std::unique_ptr<kernel::ImageReader> reader;
};

class Session {
 public:
  static Result<std::unique_ptr<Session>> open(kernel::Module& module, const std::vector<std::string>& device_paths,
                                               SessionOptions options, Logger& log, const CancelToken* cancel);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  // Releases everything; reports the first failure. Idempotent.
  Status close();

  const kernel::Uuid& id() const { return id_; }
  std::vector<SessionDevice>& devices() { return devices_; }
  // The device's whole CBT read map (one byte per block), read while held.
  Result<std::vector<uint8_t>> read_cbt_map(const SessionDevice& device);
  // Set when a `corrupted` event named the device: its image can no longer be trusted.
  std::optional<Error> device_failure(kernel::DevId dev) const;
  uint64_t storage_bytes() const { return storage_bytes_.load(); }

 private:
  Session(kernel::Module& module, SessionOptions options, Logger& log)
      : module_(module), options_(std::move(options)), log_(log) {}
  Status start(const std::vector<std::string>& device_paths, const CancelToken* cancel);
  Status add_storage(uint64_t bytes);
  Status add_device_storage(uint64_t bytes);
  Status write_record();
  Status drop_record();
  void event_loop();

  kernel::Module& module_;
  SessionOptions options_;
  Logger& log_;
  kernel::Uuid id_{};
  bool created_ = false;
  bool closed_ = false;
  std::vector<SessionDevice> devices_;
  mutable std::mutex mutex_;  // guards storage_files_ and failures_
  std::vector<std::string> storage_files_;
  std::vector<std::string> devices_text_;  // "8:16", ...: identifies the intent record
  std::vector<std::pair<kernel::DevId, Error>> failures_;
  std::atomic<uint64_t> storage_bytes_{0};
  // Device mode: the whole device as the module sees it, and how many of its
  // sectors (from 0) are handed over. Used by one thread at a time (start,
  // then the event thread).
  std::optional<kernel::Module::StorageExtents> storage_device_;
  uint64_t storage_device_used_sectors_ = 0;
  std::atomic<bool> stop_{false};
  std::thread events_;
};

// Destroys the snapshots recorded in state_dir/snapshots.json that the module
// still holds, deletes their storage files and empties the record. Snapshots not
// recorded there (another tool's) are never touched. Returns how many were destroyed.
Result<int> cleanup_orphans(kernel::Module& module, const std::string& state_dir, Logger& log);

// The ids of the snapshots blkvault recorded as its own in `state_dir` (for
// `blkvault status`: ours vs other tools').
Result<std::vector<std::string>> owned_snapshots(const std::string& state_dir);

}  // namespace blkvault::snapshot
