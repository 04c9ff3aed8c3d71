#include "kernel/sim_internal.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <random>
#include <set>

#include "common/file_io.h"
#include "kernel/sim_device.h"

namespace blkvault::kernel::sim {

int64_t monotonic_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

Uuid new_random_uuid() {
  std::random_device rd;
  Uuid id;
  for (size_t i = 0; i < id.size(); i += 4) {
    uint32_t v = rd();
    std::memcpy(id.data() + i, &v, 4);
  }
  id[6] = static_cast<uint8_t>((id[6] & 0x0f) | 0x40);  // version 4, like uuid_gen()
  id[8] = static_cast<uint8_t>((id[8] & 0x3f) | 0x80);
  return id;
}

Result<UniqueFd> open_registered(const State& state, DevId dev, int flags) {
  const RegistryEntry* e = state.find_registered(dev);
  // No such device number: the real module's blkdev open fails with ENXIO (lab).
  if (e == nullptr) return fail(ErrorCode::kNotFound, "device " + to_string(dev) + " is not known", ENXIO);
  return open_file(e->path, flags);
}

Tracker new_tracker(DevId dev, uint64_t device_size_bytes) {
  Tracker t;
  t.dev = dev;
  reset_tracker(t, device_size_bytes);
  return t;
}

void reset_tracker(Tracker& t, uint64_t device_size_bytes) {
  Geometry g = derive_geometry(device_size_bytes);
  t.capacity_bytes = g.capacity_bytes;
  t.block_size = g.block_size;
  t.block_count = g.block_count;
  t.generation = new_random_uuid();
  t.previous = 0;
  t.active = 1;
  t.map_corrupted = false;
  t.write_map.assign(g.block_count, 0);
  t.read_map.assign(g.block_count, 0);
  t.fingerprints_valid = false;
  t.fingerprints.clear();
  t.stamp = {};
}

void raise_range(Tracker& t, uint64_t offset_bytes, uint64_t length_bytes, bool both) {
  if (length_bytes == 0 || t.block_size == 0) return;
  uint64_t first = offset_bytes / t.block_size;
  uint64_t last = (offset_bytes + length_bytes - 1) / t.block_size;
  if (last >= t.block_count) t.map_corrupted = true;
  for (uint64_t b = first; b <= last && b < t.block_count; ++b) {
    t.write_map[b] = std::max(t.write_map[b], t.active);
    if (both) t.read_map[b] = std::max(t.read_map[b], t.previous);
  }
}

void queue_event(Snapshot& s, StoredEvent event) {
  event.time_ns = monotonic_ns();
  s.events.push_back(event);
}

std::optional<ChunkLocation> allocate_chunk(Snapshot& s, uint64_t chunk_sectors, const Faults& faults,
                                            uint64_t diff_storage_minimum_sectors) {
  if (s.overflow) return std::nullopt;
  std::optional<ChunkLocation> got;
  while (s.cursor_range < s.ranges.size()) {
    const StorageRange& r = s.ranges[s.cursor_range];
    uint64_t avail = r.count_sectors - std::min(r.count_sectors, s.cursor_offset);
    if (avail >= chunk_sectors) {
      if (faults.storage_limit_sectors && s.filled_sectors + chunk_sectors > *faults.storage_limit_sectors) break;
      got = ChunkLocation{r.dev, r.offset_sectors + s.cursor_offset};
      s.cursor_offset += chunk_sectors;
      s.filled_sectors += chunk_sectors;
      break;
    }
    // The tail is too small for a chunk: wasted, counted as filled.
    s.filled_sectors += avail;
    ++s.cursor_range;
    s.cursor_offset = 0;
  }
  if (!got) {
    s.overflow = true;
    return std::nullopt;
  }
  // Unsigned on purpose: if filled ever passes requested the difference wraps and
  // no further event comes, as in the real module.
  uint64_t threshold = (diff_storage_minimum_sectors / 2) & ~uint64_t{7};
  if (!s.low_space && s.requested_sectors - s.filled_sectors <= threshold) {
    s.low_space = true;
    StoredEvent ev;
    ev.code = Event::Code::kLowFreeSpace;
    ev.requested_sectors = diff_storage_minimum_sectors;
    queue_event(s, ev);
    s.requested_sectors += diff_storage_minimum_sectors;
  }
  return got;
}

void corrupt_device(Snapshot& s, SnapDevice& sd, int err) {
  if (sd.corrupted) return;
  sd.corrupted = true;
  sd.corrupt_errno = err;
  StoredEvent ev;
  ev.code = Event::Code::kCorrupted;
  ev.device = sd.dev;
  ev.error_code = err;
  queue_event(s, ev);
}

HeldDevice find_taken_device(State& state, DevId dev) {
  for (Snapshot& s : state.snapshots) {
    if (!s.taken) continue;
    for (SnapDevice& sd : s.devices)
      if (sd.dev == dev) return {&s, &sd};
  }
  return {};
}

HeldDevice find_image(State& state, DevId image) {
  if (image.major != kImageMajor) return {};
  for (Snapshot& s : state.snapshots) {
    if (!s.taken) continue;
    for (SnapDevice& sd : s.devices)
      if (sd.image_minor && *sd.image_minor == image.minor) return {&s, &sd};
  }
  return {};
}

void start_copy_on_write(State& state, Snapshot& s, DevId dev, bool tracked) {
  auto sd = std::find_if(s.devices.begin(), s.devices.end(), [&](const SnapDevice& x) { return x.dev == dev; });
  if (sd == s.devices.end()) return;
  sd->tracked = tracked;
  if (tracked) {
    const Tracker& t = state.trackers.at(dev);
    sd->capacity_bytes = t.capacity_bytes;
    sd->block_size = t.block_size;
    sd->fingerprints = t.fingerprints;
  } else {
    auto fd = open_registered(state, dev, O_RDONLY);
    uint64_t size = 0;
    if (fd) size = device_size(fd->get(), to_string(dev)).value_or(0);
    Geometry g = derive_geometry(size);
    sd->capacity_bytes = g.capacity_bytes;
    sd->block_size = g.block_size;
  }
  sd->chunk_size = derive_chunk_size(sd->capacity_bytes);
}

void assign_image_minors(State& state, Snapshot& s) {
  std::set<uint32_t> used;
  for (const Snapshot& other : state.snapshots)
    for (const SnapDevice& sd : other.devices)
      if (sd.image_minor) used.insert(*sd.image_minor);
  for (SnapDevice& sd : s.devices) {
    uint32_t minor = 0;
    while (used.contains(minor)) ++minor;
    used.insert(minor);
    sd.image_minor = minor;
  }
}

void release_snapshot(State& state, const Uuid& id) {
  for (auto& [dev, t] : state.trackers)
    if (t.owner && *t.owner == id) t.owner.reset();
  std::erase_if(state.snapshots, [&](const Snapshot& s) { return s.id == id; });
}

}  // namespace blkvault::kernel::sim
