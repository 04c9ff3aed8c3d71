#include "kernel/abi.h"

namespace blkvault::kernel::abi {

const char* ioctl_name(unsigned nr) {
  switch (nr) {
    case kNrVersion: return "VERSION";
    case kNrTrackerRemove: return "TRACKER_REMOVE";
    case kNrTrackerCollect: return "TRACKER_COLLECT";
    case kNrTrackerReadCbtMap: return "TRACKER_READ_CBT_MAP";
    case kNrTrackerMarkDirtyBlocks: return "TRACKER_MARK_DIRTY_BLOCKS";
    case kNrSnapshotCreate: return "SNAPSHOT_CREATE";
    case kNrSnapshotDestroy: return "SNAPSHOT_DESTROY";
    case kNrSnapshotAppendStorage: return "SNAPSHOT_APPEND_STORAGE";
    case kNrSnapshotTake: return "SNAPSHOT_TAKE";
    case kNrSnapshotCollect: return "SNAPSHOT_COLLECT";
    case kNrSnapshotCollectImages: return "SNAPSHOT_COLLECT_IMAGES";
    case kNrSnapshotWaitEvent: return "SNAPSHOT_WAIT_EVENT";
    case kNrMod: return "MOD";
    case kNrSetlog: return "SETLOG";
    case kNrGetSectorState: return "GET_SECTOR_STATE";
    default: return "unknown ioctl";
  }
}

}  // namespace blkvault::kernel::abi
