// kernel/sim_internal.h — helpers shared by the SimModule sources (sim_module.cpp,
// sim_write.cpp, sim_image.cpp). Not for use outside kernel/sim_*.
//
// All functions operate on a State the caller holds under the store's lock.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "kernel/sim_state.h"

namespace blkvault::kernel::sim {

int64_t monotonic_ns();
Uuid new_random_uuid();

// Opens a registered device (or storage file) by DevId; kNotFound / errno errors
// name the path.
Result<UniqueFd> open_registered(const State& state, DevId dev, int flags);

// A fresh tracker for `dev` of `device_size_bytes` (new generation, zero maps,
// previous 0 / active 1, fingerprints not yet made).
Tracker new_tracker(DevId dev, uint64_t device_size_bytes);
// Resets an existing tracker's map to a new geometry and generation (take on resize
// or corruption, SEMANTICS.md §2 TAKE step 3).
void reset_tracker(Tracker& t, uint64_t device_size_bytes);

// Raises the write map bytes of the blocks touched by [offset, offset + length) to
// the active number (and the read map to previous when `both`). A range reaching
// past block_count flags the map corrupted and raises nothing past it.
void raise_range(Tracker& t, uint64_t offset_bytes, uint64_t length_bytes, bool both);

// Queues an event on a snapshot.
void queue_event(Snapshot& s, StoredEvent event);

// Hands out one chunk of `chunk_sectors` from the snapshot's storage (wasting a
// range's too-small tail), applying the low-free-space rule (SEMANTICS.md §4).
// nullopt on overflow (and sets s.overflow).
std::optional<ChunkLocation> allocate_chunk(Snapshot& s, uint64_t chunk_sectors, const Faults& faults,
                                            uint64_t diff_storage_minimum_sectors);

// Marks a snapshot device corrupted and queues its one `corrupted` event.
void corrupt_device(Snapshot& s, SnapDevice& sd, int err);

// The snapshot (any, listed or not) that holds `dev` taken, and its entry; nullptr if none.
struct HeldDevice {
  Snapshot* snapshot = nullptr;
  SnapDevice* device = nullptr;
};
HeldDevice find_taken_device(State& state, DevId dev);
// The snapshot device behind an image DevId; nullptr fields if none.
HeldDevice find_image(State& state, DevId image);

// Take, per device after its CBT switch: fills the snapshot device's geometry,
// chunk size and take-time fingerprints (`tracked` false: its tracker was removed
// before take, so no copy-on-write will happen).
void start_copy_on_write(State& state, Snapshot& s, DevId dev, bool tracked);
// Take, last step: one image per device, each the lowest minor free in any snapshot.
void assign_image_minors(State& state, Snapshot& s);

// Releases a snapshot (destroy, or a failed take): clears tracker ownership and
// removes it (and its images and events) from the state.
void release_snapshot(State& state, const Uuid& id);

}  // namespace blkvault::kernel::sim
