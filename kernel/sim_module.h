// kernel/sim_module.h — a user-space simulation of veeamblksnap 6.3.
//
// SimModule implements Module with the semantics of SEMANTICS.md (§2 ioctls, §3
// CBT, §4 lifecycle, checklist §7), keeping its "kernel" state in a directory so
// that it survives between processes like the real module survives between
// backups. docs/SIMULATION.md describes what is simulated, the directory layout,
// the guarantees and the limits.
//
// Devices are block devices (DevId = st_rdev) or regular image files (a synthetic
// DevId 240:N from a registry in the directory; the same path always gets the same
// id). The simulation sees writes made through write() below, the way the kernel
// filter sees bios: those raise the CBT write map and are copied-on-write into the
// diff storage while a snapshot is taken. Writes made behind its back (dd, a loop
// mount) are found by per-block XXH3 fingerprints: a take rescans the device and
// marks every block whose content changed, and an image read of a block that
// changed outside since take fails as if the snapshot were corrupted.
//
// Thread-safety: thread-safe, and safe across processes sharing the directory:
// every call runs under flock on <dir>/lock (shared for image reads and queries,
// exclusive for changes).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernel/module.h"

namespace blkvault::kernel {

namespace sim {
class StateStore;
struct State;
}  // namespace sim

struct SimOptions {
  // The module parameter diff_storage_minimum (sectors). When set, it is stored in
  // the directory and applies to later snapshots of every process; when unset the
  // stored value is used (initially the real default, 2,097,152 = 1 GiB).
  std::optional<uint64_t> diff_storage_minimum_sectors;
};

// What `blkvault sim show` prints.
struct SimTrackerView {
  CbtInfo info;
  std::string path;
  uint8_t active = 0;
  bool map_corrupted = false;
  std::optional<Uuid> owner;
};
struct SimSnapshotDeviceView {
  DevId original;
  std::optional<DevId> image;
  uint64_t cow_chunks = 0;
  bool corrupted = false;
  int32_t corrupt_errno = 0;
};
struct SimSnapshotView {
  Uuid id{};
  bool listed = true;
  bool taken = false;
  std::vector<SimSnapshotDeviceView> devices;
  uint64_t capacity_sectors = 0;
  uint64_t filled_sectors = 0;
  uint64_t requested_sectors = 0;
  bool low_space = false;
  bool overflow = false;
  size_t pending_events = 0;
};
struct SimView {
  std::vector<SimTrackerView> trackers;
  std::vector<SimSnapshotView> snapshots;
  uint64_t diff_storage_minimum_sectors = 0;
  bool list_bug = false;
  std::optional<uint64_t> storage_limit_sectors;
  size_t read_faults = 0;
  size_t lost_writes_pending = 0;
  std::vector<std::string> sim_writes_only;  // paths set to `outside-writes none`
};

class SimModule final : public Module {
 public:
  // Opens (creating with mode 0700 if missing) the state directory.
  static Result<std::unique_ptr<SimModule>> open(const std::string& state_dir, SimOptions options = {});

  SimModule(const SimModule&) = delete;
  SimModule& operator=(const SimModule&) = delete;
  ~SimModule() override;

  std::string description() const override;
  Result<Version> version() override;
  Result<DevId> device_id(const std::string& path) override;
  Result<std::string> device_path(DevId dev) override;
  Result<std::vector<CbtInfo>> tracked_devices() override;
  Status read_cbt_map(DevId dev, uint32_t offset_blocks, std::span<uint8_t> out) override;
  Status mark_dirty(DevId dev, std::span<const SectorRange> ranges) override;
  Status remove_tracker(DevId dev) override;
  Result<Uuid> create_snapshot(std::span<const DevId> devices) override;
  Status destroy_snapshot(const Uuid& id) override;
  Status append_storage(const Uuid& id, DevId storage_dev, std::span<const SectorRange> ranges) override;
  Status take_snapshot(const Uuid& id) override;
  Result<std::vector<Uuid>> snapshots() override;
  Result<std::vector<ImageInfo>> snapshot_images(const Uuid& id) override;
  // timeout_ms is milliseconds here (the real module's jiffies bug is not
  // reproduced); the queue is polled every few milliseconds.
  Result<std::optional<Event>> wait_event(const Uuid& id, uint32_t timeout_ms) override;
  Result<std::unique_ptr<ImageReader>> open_image(DevId image) override;
  // Registers a regular file as a diff-storage "device" (DevId 240:N) and returns
  // [0, size/512). kInvalidArgument if it is not a regular file or has holes
  // (not fully fallocated), as the real module's mapping refuses it.
  Result<StorageExtents> map_storage_file(const std::string& path) override;
  Result<StorageExtents> map_storage_device(const std::string& path) override;

  // ---- the write path the "kernel" sees ----

  // Writes `data` at `offset_bytes` of a device through the simulated filter:
  // copy-on-write of every affected chunk into the diff storage of a taken
  // snapshot (or overflow: a `corrupted` event and the image fails from then on),
  // the write itself, then the CBT write map raised to the active number.
  // REQUIRES: the range lies within the device (kInvalidArgument otherwise; a
  // block device cannot grow either). Untracked devices are just written.
  Status write(const std::string& device_path, uint64_t offset_bytes, std::span<const uint8_t> data);

  // Whether `device_path` may be written behind the simulation's back (dd, a
  // loop mount). `detect` (the default): per-block fingerprints, rescanned at
  // take, and image reads checked against them. Otherwise the caller declares
  // that every write goes through write(), as the real filter sees every bio:
  // the fingerprints are dropped, a take reads nothing, image reads are not
  // checked, and an outside write is silently missed. Persisted; not a fault.
  Status set_outside_writes(const std::string& device_path, bool detect);

  // ---- fault injection (persisted in the directory, off by default) ----

  // Module reload: every tracker and snapshot vanishes (images too); the device
  // registry, settings and faults stay. The next create starts new generations.
  Status drop_state();
  // Caps the filled sectors of every snapshot's diff storage (nullopt: no cap),
  // forcing an overflow once the cap is reached.
  Status set_storage_limit(std::optional<uint64_t> max_sectors);
  // Image reads of [offset, offset + length) of `device`'s image fail with EIO.
  Status inject_read_error(DevId device, uint64_t offset_bytes, uint64_t length_bytes);
  // The next write() to `device` changes it but neither raises the CBT map nor
  // lets the fingerprints see it: a lying CBT, for the CBT audit.
  Status lose_next_write(DevId device);
  // Every later write() to `device` raises no CBT map byte for its bytes inside
  // [offset, offset + length) (blocks it also writes outside the range are
  // marked), and the fingerprints follow the data, as for lose_next_write.
  // Stays until clear_faults().
  Status lose_writes_in(DevId device, uint64_t offset_bytes, uint64_t length_bytes);
  // The 6.x list bug: when on, each create drops every earlier snapshot from the
  // module's list (they keep their devices and copy-on-write but cannot be found).
  Status set_list_bug(bool on);
  // Clears read errors, lost writes, the storage cap and the list bug.
  Status clear_faults();

  // ---- inspection ----
  Result<SimView> inspect();
  const std::string& state_dir() const;
  // Bytes this process has read from devices to compute fingerprints (a measure
  // of the outside-write detection cost, for tests and `sim show`).
  uint64_t fingerprint_bytes_read() const { return fingerprint_bytes_read_.load(); }

 private:
  explicit SimModule(std::shared_ptr<sim::StateStore> store);

  Result<DevId> register_path(sim::State& state, const std::string& path, bool& dirty, bool allow_block);
  Status scan_at_take(sim::State& state, DevId dev);

  std::shared_ptr<sim::StateStore> store_;
  std::atomic<uint64_t> fingerprint_bytes_read_{0};
};

}  // namespace blkvault::kernel
