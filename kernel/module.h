// kernel/module.h — the one interface blkvault uses to talk to veeamblksnap.
//
// Two implementations, indistinguishable above kernel/:
//   IoctlModule (kernel/ioctl_module.h): the real module, ioctls on /dev/veeamblksnap.
//   SimModule   (kernel/sim_module.h):   a user-space simulation with the same
//                                        semantics, its state persisted in a directory.
// open_module("/dev/veeamblksnap" | "sim:DIR") picks one.
//
// Semantics follow the 6.3 ABI as documented in ../shared/blksnap/SEMANTICS.md:
// at most one snapshot at a time, trackers created by create_snapshot(), CBT maps
// readable only while a snapshot is taken, events FIFO, nothing cleaned up when a
// process dies. Every failed call returns an Error of code kModule (or kNotFound /
// kBusy / kPermission where the errno says so) whose sys_errno() is the errno the
// real module would return and whose message names the operation and device:
//   "SNAPSHOT_TAKE of snapshot 5f0c…: Bad address".
//
// Thread-safety: a Module may be called from several threads at once (the event
// thread waits while the main thread reads images), as the kernel allows.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"

namespace blkvault::kernel {

// A block device number as the module encodes it (blk_snap_dev_t).
struct DevId {
  uint32_t major = 0;
  uint32_t minor = 0;
  auto operator<=>(const DevId&) const = default;
};
std::string to_string(DevId id);  // "8:16"

// A snapshot id or CBT generation id (uuid_t, 16 raw bytes).
using Uuid = std::array<uint8_t, 16>;
std::string to_string(const Uuid& id);  // canonical 8-4-4-4-12 lower-case form
std::optional<Uuid> parse_uuid(std::string_view text);

struct Version {
  uint16_t major = 0, minor = 0, revision = 0, build = 0;
};
std::string to_string(const Version& v);  // "6.3.0.73"

// One entry of TRACKER_COLLECT (blk_snap_cbt_info), in host units.
struct CbtInfo {
  DevId dev;
  uint32_t block_size_bytes = 0;
  uint64_t capacity_bytes = 0;
  uint32_t block_count = 0;
  Uuid generation_id{};
  uint8_t snap_number = 0;  // the map's snap_number_previous (the last take)
};

// A range of 512-byte sectors (blk_snap_block_range).
struct SectorRange {
  uint64_t offset_sectors = 0;
  uint64_t count_sectors = 0;
};
inline constexpr uint32_t kSectorSize = 512;

struct ImageInfo {
  DevId original;
  DevId image;
};

struct Event {
  enum class Code : uint32_t { kLowFreeSpace = 0, kCorrupted = 1 };
  Code code = Code::kLowFreeSpace;
  int64_t time_label_ns = 0;       // CLOCK_MONOTONIC
  uint64_t requested_sectors = 0;  // kLowFreeSpace
  DevId corrupted_device;          // kCorrupted
  int32_t error_code = 0;          // kCorrupted: positive errno (28 = ENOSPC)
};

// Read-only access to one snapshot image. Reads fail (kIo, errno EIO or ENOSPC)
// once the image is corrupted; they never return mixed data.
// Thread-safety: read_at may be called concurrently.
class ImageReader {
 public:
  virtual ~ImageReader() = default;
  virtual uint64_t size_bytes() const = 0;
  // Reads exactly data.size() bytes at offset (REQUIRES: offset + size <= size_bytes()).
  virtual Status read_at(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual const std::string& path() const = 0;
  // Bytes read so far past the page cache (O_DIRECT: common/direct_read.h).
  virtual uint64_t direct_bytes() const { return 0; }
};

class Module {
 public:
  virtual ~Module() = default;

  // "veeamblksnap 6.3.0.73 (/dev/veeamblksnap)" or "simulated veeamblksnap 6.3.0.73 (sim:/dir)".
  virtual std::string description() const = 0;

  // VERSION. Callers refuse anything but 6.3 with check_module_version() (kModule).
  virtual Result<Version> version() = 0;

  // Resolves a device path given by the user to the DevId the module uses
  // (st_rdev of a block device; the simulation's registry for an image file).
  // kNotFound when the path does not exist, kInvalidArgument when it is neither
  // a block device nor (for the simulation) a regular file.
  virtual Result<DevId> device_id(const std::string& path) = 0;
  // The path of a device the module knows (inverse of device_id), for messages;
  // "MAJ:MIN" when it cannot name the device.
  virtual Result<std::string> device_path(DevId dev) = 0;

  // TRACKER_COLLECT with the size probe, looping while the count races.
  virtual Result<std::vector<CbtInfo>> tracked_devices() = 0;
  // TRACKER_READ_CBT_MAP: reads `out.size()` bytes of the map starting at
  // block `offset_blocks`, chunked as the ABI requires. REQUIRES: the range lies
  // within block_count. Needs a taken snapshot on the device (EPERM otherwise).
  virtual Status read_cbt_map(DevId dev, uint32_t offset_blocks, std::span<uint8_t> out) = 0;
  // TRACKER_MARK_DIRTY_BLOCKS.
  virtual Status mark_dirty(DevId dev, std::span<const SectorRange> ranges) = 0;
  // TRACKER_REMOVE.
  virtual Status remove_tracker(DevId dev) = 0;

  // SNAPSHOT_CREATE / DESTROY / APPEND_STORAGE / TAKE / COLLECT / COLLECT_IMAGES.
  virtual Result<Uuid> create_snapshot(std::span<const DevId> devices) = 0;
  virtual Status destroy_snapshot(const Uuid& id) = 0;
  virtual Status append_storage(const Uuid& id, DevId storage_dev, std::span<const SectorRange> ranges) = 0;
  virtual Status take_snapshot(const Uuid& id) = 0;
  virtual Result<std::vector<Uuid>> snapshots() = 0;
  virtual Result<std::vector<ImageInfo>> snapshot_images(const Uuid& id) = 0;

  // SNAPSHOT_WAIT_EVENT. std::nullopt on timeout or EINTR (ENOENT/EINTR);
  // an error (errno ESRCH) when the snapshot is gone. timeout_ms is passed to
  // the module as is (the real module treats it as jiffies).
  virtual Result<std::optional<Event>> wait_event(const Uuid& id, uint32_t timeout_ms) = 0;

  // Opens a snapshot image for reading (O_RDONLY for the real module).
  virtual Result<std::unique_ptr<ImageReader>> open_image(DevId image) = 0;

  // Turns an already fully allocated (fallocate'd, not sparse) diff-storage file
  // into what APPEND_STORAGE takes. The real module needs the file's physical
  // extents on its block device (FIEMAP; 512-byte aligned; storage_dev = st_dev);
  // the simulation registers the file itself as a storage device and returns
  // [0, size/512). The file must stay untouched until the snapshot is destroyed.
  struct StorageExtents {
    DevId storage_dev;
    std::vector<SectorRange> ranges;
  };
  virtual Result<StorageExtents> map_storage_file(const std::string& path) = 0;
  // A whole block device given over to difference storage (a spare partition
  // or disk): storage_dev = st_rdev, one range [0, size/512). kInvalidArgument
  // when it is not a block device (the simulation takes a regular file as its
  // stand-in), kBusy when it is mounted or held exclusively. Its contents are
  // overwritten while a snapshot uses it.
  virtual Result<StorageExtents> map_storage_device(const std::string& path) = 0;
};

// The Error a Module returns when (the real or simulated) veeamblksnap refuses a
// call, so that both implementations report failures identically:
//   message   "<operation> of <subject>: <strerror(err)>" ("<operation>: ..." when
//             subject is empty); operation is the ioctl's name ("SNAPSHOT_TAKE"),
//             subject "device 8:16" or "snapshot <uuid>";
//   sys_errno err;
//   code      what the errno means for that operation (SEMANTICS.md §6.3):
//             kNotFound: ESRCH (unknown snapshot), ENODEV of SNAPSHOT_DESTROY
//               (unknown snapshot), ENODATA of TRACKER_REMOVE/TRACKER_READ_CBT_MAP
//               and ENODEV of TRACKER_MARK_DIRTY_BLOCKS (untracked device),
//               ENOENT/ENXIO and ENODEV of SNAPSHOT_CREATE (missing device);
//             kBusy: EBUSY, and EALREADY of SNAPSHOT_CREATE (device in another snapshot);
//             kPermission: EACCES;
//             kModule: everything else (EPERM of READ_CBT_MAP means "not taken").
Error module_error(std::string_view operation, std::string_view subject, int err);

// "device 8:16", "snapshot 5f0c1e2d-…": the subjects module_error() expects.
std::string device_subject(DevId dev);
std::string snapshot_subject(const Uuid& id);

// Refuses a module whose VERSION is not 6.3.x.x: kModule
// "veeamblksnap at <where> is version 7.0.0.1, blkvault needs the 6.3 ABI".
// A failing version() call is returned as is.
Status check_module_version(Module& module, std::string_view where);

// "/dev/veeamblksnap" (or any path) -> IoctlModule; "sim:DIR" -> SimModule.
// A missing control device is kModule with a message that says how to load the
// module ("modprobe veeamblksnap") or to use --module sim:DIR. The module's
// version is checked with check_module_version().
Result<std::unique_ptr<Module>> open_module(const std::string& spec);

}  // namespace blkvault::kernel
