// kernel/abi.h — our declarations of the veeamblksnap 6.3 user-space ABI.
//
// These mirror, field for field, the structs and request codes of the module's
// UAPI header (blk_snap.h of veeam/blksnap tag release_6.3.0.73; see
// ../shared/blksnap/SEMANTICS.md §0). They are written independently of that
// header and every size, field offset and request code is pinned below by
// static_assert, so a layout mistake fails to compile.
//
// The ABI is LP64 little-endian only (x86_64, aarch64): the module has no
// compat_ioctl, and pointers inside the structs are 8 bytes.
//
// Who uses this: IoctlModule (the real client) and the test-only decoding
// transport. Nothing above kernel/ should include it; use kernel/module.h.
// Thread-safety: declarations only.
#pragma once

#include <linux/ioctl.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace blkvault::kernel::abi {

static_assert(sizeof(void*) == 8, "the veeamblksnap 6.3 ABI is 64-bit only (no compat_ioctl)");

inline constexpr const char kControlPath[] = "/dev/veeamblksnap";
inline constexpr const char kModuleName[] = "veeamblksnap";
// Image block devices are /dev/<kImageNamePrefix><minor>.
inline constexpr const char kImageNamePrefix[] = "veeamblksnapimg";

inline constexpr unsigned kIoctlType = 'V';

// ioctl numbers (_IOC_NR). The module dispatches on these alone.
enum Nr : unsigned {
  kNrVersion = 0,
  kNrTrackerRemove = 1,
  kNrTrackerCollect = 2,
  kNrTrackerReadCbtMap = 3,
  kNrTrackerMarkDirtyBlocks = 4,
  kNrSnapshotCreate = 5,
  kNrSnapshotDestroy = 6,
  kNrSnapshotAppendStorage = 7,
  kNrSnapshotTake = 8,
  kNrSnapshotCollect = 9,
  kNrSnapshotCollectImages = 10,
  kNrSnapshotWaitEvent = 11,
  kNrEnd = 12,  // never send: the module indexes past its table (SEMANTICS §0)
  kNrMod = 32,
  kNrSetlog = 33,
  kNrGetSectorState = 34,
};

// uuid_t: 16 raw bytes, alignment 1.
using RawUuid = std::array<uint8_t, 16>;

struct Version {  // blk_snap_version
  uint16_t major;
  uint16_t minor;
  uint16_t revision;
  uint16_t build;
};

struct DevT {  // blk_snap_dev_t
  uint32_t mj;
  uint32_t mn;
};

struct TrackerRemove {  // blk_snap_tracker_remove
  DevT dev_id;
};

struct CbtInfo {  // blk_snap_cbt_info
  DevT dev_id;
  uint32_t blk_size;         // bytes
  uint64_t device_capacity;  // bytes
  uint32_t blk_count;
  RawUuid generation_id;
  uint8_t snap_number;  // the map's snap_number_previous
};

struct TrackerCollect {  // blk_snap_tracker_collect
  uint32_t count;
  CbtInfo* cbt_info_array;  // NULL: size probe
};

struct TrackerReadCbtBitmap {  // blk_snap_tracker_read_cbt_bitmap
  DevT dev_id;
  uint32_t offset;  // in bytes of the map == blocks
  uint32_t length;  // bytes of buff
  uint8_t* buff;
};

struct BlockRange {  // blk_snap_block_range, 512-byte sectors
  uint64_t sector_offset;
  uint64_t sector_count;
};

struct TrackerMarkDirtyBlocks {  // blk_snap_tracker_mark_dirty_blocks
  DevT dev_id;
  uint32_t count;
  BlockRange* dirty_blocks_array;
};

struct SnapshotCreate {  // blk_snap_snapshot_create
  uint32_t count;
  DevT* dev_id_array;
  RawUuid id;  // out
};

struct SnapshotDestroy {  // blk_snap_snapshot_destroy
  RawUuid id;
};

struct SnapshotAppendStorage {  // blk_snap_snapshot_append_storage
  RawUuid id;
  DevT dev_id;
  uint32_t count;
  BlockRange* ranges;
};

struct SnapshotTake {  // blk_snap_snapshot_take
  RawUuid id;
};

struct SnapshotCollect {  // blk_snap_snapshot_collect
  uint32_t count;
  RawUuid* ids;  // NULL: size probe
};

struct ImageInfo {  // blk_snap_image_info
  DevT orig_dev_id;
  DevT image_dev_id;
};

struct SnapshotCollectImages {  // blk_snap_snapshot_collect_images
  RawUuid id;
  uint32_t count;
  ImageInfo* image_info_array;  // NULL: size probe
};

enum EventCode : uint32_t {
  kEventLowFreeSpace = 0,
  kEventCorrupted = 1,
};

inline constexpr size_t kEventDataSize = 4096 - 32;

struct SnapshotEvent {  // blk_snap_snapshot_event, one page
  RawUuid id;
  uint32_t timeout_ms;  // in: really jiffies (SEMANTICS §2 WAIT_EVENT)
  uint32_t code;        // out: EventCode
  int64_t time_label;   // out: ktime_get() ns
  uint8_t data[kEventDataSize];  // out: one of the event bodies below
};

struct EventLowFreeSpace {  // blk_snap_event_low_free_space
  uint64_t requested_nr_sect;
};

struct EventCorrupted {  // blk_snap_event_corrupted
  DevT orig_dev_id;
  int32_t err_code;  // positive errno
};

inline constexpr size_t kModNameLimit = 32;
enum CompatFlag : unsigned {
  kCompatDebugSectorState = 0,
  kCompatSetlog = 1,
};

struct Mod {  // blk_snap_mod
  uint64_t compatibility_flags;
  uint8_t name[kModNameLimit];
};

struct Setlog {  // blk_snap_setlog
  int32_t tz_minuteswest;
  uint32_t level;
  uint32_t filepath_size;
  uint8_t* filepath;
};

struct SectorState {  // blk_snap_sector_state
  uint8_t snap_number_prev;
  uint8_t snap_number_curr;
  uint32_t chunk_state;
};

struct GetSectorState {  // blk_snap_get_sector_state
  DevT image_dev_id;
  uint64_t sector;
  SectorState state;
};

// Request codes, built with the same direction macros as the header (whose
// directions are partly "wrong"; the module ignores everything but the nr).
inline constexpr unsigned long kIoctlVersion = _IOW(kIoctlType, kNrVersion, Version);
inline constexpr unsigned long kIoctlTrackerRemove = _IOW(kIoctlType, kNrTrackerRemove, TrackerRemove);
inline constexpr unsigned long kIoctlTrackerCollect = _IOW(kIoctlType, kNrTrackerCollect, TrackerCollect);
inline constexpr unsigned long kIoctlTrackerReadCbtMap =
    _IOR(kIoctlType, kNrTrackerReadCbtMap, TrackerReadCbtBitmap);
inline constexpr unsigned long kIoctlTrackerMarkDirtyBlocks =
    _IOR(kIoctlType, kNrTrackerMarkDirtyBlocks, TrackerMarkDirtyBlocks);
inline constexpr unsigned long kIoctlSnapshotCreate = _IOW(kIoctlType, kNrSnapshotCreate, SnapshotCreate);
inline constexpr unsigned long kIoctlSnapshotDestroy = _IOR(kIoctlType, kNrSnapshotDestroy, SnapshotDestroy);
inline constexpr unsigned long kIoctlSnapshotAppendStorage =
    _IOW(kIoctlType, kNrSnapshotAppendStorage, SnapshotAppendStorage);
inline constexpr unsigned long kIoctlSnapshotTake = _IOR(kIoctlType, kNrSnapshotTake, SnapshotTake);
inline constexpr unsigned long kIoctlSnapshotCollect = _IOW(kIoctlType, kNrSnapshotCollect, SnapshotCollect);
inline constexpr unsigned long kIoctlSnapshotCollectImages =
    _IOW(kIoctlType, kNrSnapshotCollectImages, SnapshotCollectImages);
inline constexpr unsigned long kIoctlSnapshotWaitEvent = _IOW(kIoctlType, kNrSnapshotWaitEvent, SnapshotEvent);
inline constexpr unsigned long kIoctlMod = _IOW(kIoctlType, kNrMod, Mod);
inline constexpr unsigned long kIoctlSetlog = _IOW(kIoctlType, kNrSetlog, Setlog);
inline constexpr unsigned long kIoctlGetSectorState = _IOW(kIoctlType, kNrGetSectorState, GetSectorState);

// The name of an ioctl by nr, for messages ("SNAPSHOT_TAKE"); "ioctl <nr>" for others.
const char* ioctl_name(unsigned nr);

// ---- Pinned layout (SEMANTICS.md §0, x86_64) ----

static_assert(sizeof(RawUuid) == 16 && alignof(RawUuid) == 1);

static_assert(sizeof(Version) == 8);
static_assert(offsetof(Version, major) == 0 && offsetof(Version, minor) == 2);
static_assert(offsetof(Version, revision) == 4 && offsetof(Version, build) == 6);

static_assert(sizeof(DevT) == 8 && offsetof(DevT, mj) == 0 && offsetof(DevT, mn) == 4);
static_assert(sizeof(TrackerRemove) == 8 && offsetof(TrackerRemove, dev_id) == 0);

static_assert(sizeof(CbtInfo) == 48);
static_assert(offsetof(CbtInfo, dev_id) == 0 && offsetof(CbtInfo, blk_size) == 8);
static_assert(offsetof(CbtInfo, device_capacity) == 16 && offsetof(CbtInfo, blk_count) == 24);
static_assert(offsetof(CbtInfo, generation_id) == 28 && offsetof(CbtInfo, snap_number) == 44);

static_assert(sizeof(TrackerCollect) == 16);
static_assert(offsetof(TrackerCollect, count) == 0 && offsetof(TrackerCollect, cbt_info_array) == 8);

static_assert(sizeof(TrackerReadCbtBitmap) == 24);
static_assert(offsetof(TrackerReadCbtBitmap, dev_id) == 0 && offsetof(TrackerReadCbtBitmap, offset) == 8);
static_assert(offsetof(TrackerReadCbtBitmap, length) == 12 && offsetof(TrackerReadCbtBitmap, buff) == 16);

static_assert(sizeof(BlockRange) == 16);
static_assert(offsetof(BlockRange, sector_offset) == 0 && offsetof(BlockRange, sector_count) == 8);

static_assert(sizeof(TrackerMarkDirtyBlocks) == 24);
static_assert(offsetof(TrackerMarkDirtyBlocks, dev_id) == 0 && offsetof(TrackerMarkDirtyBlocks, count) == 8);
static_assert(offsetof(TrackerMarkDirtyBlocks, dirty_blocks_array) == 16);

static_assert(sizeof(SnapshotCreate) == 32);
static_assert(offsetof(SnapshotCreate, count) == 0 && offsetof(SnapshotCreate, dev_id_array) == 8);
static_assert(offsetof(SnapshotCreate, id) == 16);

static_assert(sizeof(SnapshotDestroy) == 16 && offsetof(SnapshotDestroy, id) == 0);

static_assert(sizeof(SnapshotAppendStorage) == 40);
static_assert(offsetof(SnapshotAppendStorage, id) == 0 && offsetof(SnapshotAppendStorage, dev_id) == 16);
static_assert(offsetof(SnapshotAppendStorage, count) == 24 && offsetof(SnapshotAppendStorage, ranges) == 32);

static_assert(sizeof(SnapshotTake) == 16 && offsetof(SnapshotTake, id) == 0);

static_assert(sizeof(SnapshotCollect) == 16);
static_assert(offsetof(SnapshotCollect, count) == 0 && offsetof(SnapshotCollect, ids) == 8);

static_assert(sizeof(ImageInfo) == 16);
static_assert(offsetof(ImageInfo, orig_dev_id) == 0 && offsetof(ImageInfo, image_dev_id) == 8);

static_assert(sizeof(SnapshotCollectImages) == 32);
static_assert(offsetof(SnapshotCollectImages, id) == 0 && offsetof(SnapshotCollectImages, count) == 16);
static_assert(offsetof(SnapshotCollectImages, image_info_array) == 24);

static_assert(sizeof(SnapshotEvent) == 4096);
static_assert(offsetof(SnapshotEvent, id) == 0 && offsetof(SnapshotEvent, timeout_ms) == 16);
static_assert(offsetof(SnapshotEvent, code) == 20 && offsetof(SnapshotEvent, time_label) == 24);
static_assert(offsetof(SnapshotEvent, data) == 32 && sizeof(SnapshotEvent::data) == 4064);

static_assert(sizeof(EventLowFreeSpace) == 8 && offsetof(EventLowFreeSpace, requested_nr_sect) == 0);
static_assert(sizeof(EventCorrupted) == 12);
static_assert(offsetof(EventCorrupted, orig_dev_id) == 0 && offsetof(EventCorrupted, err_code) == 8);

static_assert(sizeof(Mod) == 40 && offsetof(Mod, compatibility_flags) == 0 && offsetof(Mod, name) == 8);

static_assert(sizeof(Setlog) == 24);
static_assert(offsetof(Setlog, tz_minuteswest) == 0 && offsetof(Setlog, level) == 4);
static_assert(offsetof(Setlog, filepath_size) == 8 && offsetof(Setlog, filepath) == 16);

static_assert(sizeof(SectorState) == 8);
static_assert(offsetof(SectorState, snap_number_prev) == 0 && offsetof(SectorState, snap_number_curr) == 1);
static_assert(offsetof(SectorState, chunk_state) == 4);

static_assert(sizeof(GetSectorState) == 24);
static_assert(offsetof(GetSectorState, image_dev_id) == 0 && offsetof(GetSectorState, sector) == 8);
static_assert(offsetof(GetSectorState, state) == 16);

static_assert(kIoctlVersion == 0x40085600);
static_assert(kIoctlTrackerRemove == 0x40085601);
static_assert(kIoctlTrackerCollect == 0x40105602);
static_assert(kIoctlTrackerReadCbtMap == 0x80185603);
static_assert(kIoctlTrackerMarkDirtyBlocks == 0x80185604);
static_assert(kIoctlSnapshotCreate == 0x40205605);
static_assert(kIoctlSnapshotDestroy == 0x80105606);
static_assert(kIoctlSnapshotAppendStorage == 0x40285607);
static_assert(kIoctlSnapshotTake == 0x80105608);
static_assert(kIoctlSnapshotCollect == 0x40105609);
static_assert(kIoctlSnapshotCollectImages == 0x4020560a);
static_assert(kIoctlSnapshotWaitEvent == 0x5000560b);
static_assert(kIoctlMod == 0x40285620);
static_assert(kIoctlSetlog == 0x40185621);
static_assert(kIoctlGetSectorState == 0x40185622);

}  // namespace blkvault::kernel::abi
