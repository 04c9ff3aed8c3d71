// The control-device side of the simulated module: one method per ioctl, each a
// transaction on the state directory. The write path is in sim_write.cpp, image
// reads in sim_image.cpp.
#include "kernel/sim_module.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "common/file_io.h"
#include "kernel/sim_device.h"
#include "kernel/sim_internal.h"
#include "kernel/sim_state.h"

namespace blkvault::kernel {

using sim::State;
using sim::StateStore;

SimModule::SimModule(std::shared_ptr<StateStore> store) : store_(std::move(store)) {}
SimModule::~SimModule() = default;

Result<std::unique_ptr<SimModule>> SimModule::open(const std::string& state_dir, SimOptions options) {
  auto store = StateStore::open(state_dir);
  if (!store) return fail(std::move(store).error().wrap("opening simulated module sim:" + state_dir));
  std::unique_ptr<SimModule> module(new SimModule(std::move(*store)));
  if (options.diff_storage_minimum_sectors) {
    uint64_t minimum = *options.diff_storage_minimum_sectors;
    BLKVAULT_TRY(module->store_->update<void>([&](State& s, bool& dirty) -> Status {
      if (s.diff_storage_minimum_sectors != minimum) {
        s.diff_storage_minimum_sectors = minimum;
        dirty = true;
      }
      return {};
    }));
  }
  return module;
}

const std::string& SimModule::state_dir() const { return store_->dir(); }

std::string SimModule::description() const { return "simulated veeamblksnap 6.3.0.73 (sim:" + store_->dir() + ")"; }

Result<Version> SimModule::version() { return Version{6, 3, 0, 73}; }

Result<DevId> SimModule::register_path(State& state, const std::string& path, bool& dirty, bool allow_block) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail_errno("resolving device " + path);
  std::error_code ec;
  std::string canonical = std::filesystem::canonical(path, ec).string();
  if (ec) return fail(ErrorCode::kIo, "resolving device " + path + ": " + ec.message(), ec.value());
  if (S_ISBLK(st.st_mode) && allow_block) {
    DevId dev{::major(st.st_rdev), ::minor(st.st_rdev)};
    if (state.find_registered(dev) == nullptr) {
      state.registry.push_back({dev, canonical, true});
      dirty = true;
    }
    return dev;
  }
  if (!S_ISREG(st.st_mode)) {
    // Worded like IoctlModule::device_id ("resolving device X: not a block device").
    return fail(ErrorCode::kInvalidArgument,
                "resolving device " + path + (allow_block ? ": not a block device or regular file" : ": not a regular file"));
  }
  if (const sim::RegistryEntry* e = state.find_registered(canonical)) return e->dev;
  DevId dev{sim::kFileMajor, state.next_file_minor++};
  state.registry.push_back({dev, canonical, false});
  dirty = true;
  return dev;
}

Result<DevId> SimModule::device_id(const std::string& path) {
  return store_->update<DevId>(
      [&](State& s, bool& dirty) { return register_path(s, path, dirty, /*allow_block=*/true); });
}

Result<std::string> SimModule::device_path(DevId dev) {
  return store_->read<std::string>([&](const State& s) -> Result<std::string> {
    if (dev.major == sim::kImageMajor) return "sim:" + store_->dir() + "/veeamblksnapimg" + std::to_string(dev.minor);
    if (const sim::RegistryEntry* e = s.find_registered(dev)) return e->path;
    return to_string(dev);  // as IoctlModule does when sysfs cannot name it
  });
}

Result<std::vector<CbtInfo>> SimModule::tracked_devices() {
  return store_->read<std::vector<CbtInfo>>([](const State& s) -> Result<std::vector<CbtInfo>> {
    std::vector<CbtInfo> out;
    for (const auto& [dev, t] : s.trackers) {
      CbtInfo info;
      info.dev = dev;
      // A device that cannot be opened any more (hot-removed, image file deleted)
      // is listed with only its dev id, as collect_cbt_info does.
      const sim::RegistryEntry* e = s.find_registered(dev);
      struct stat st {};
      if (e == nullptr || ::stat(e->path.c_str(), &st) != 0) {
        out.push_back(info);
        continue;
      }
      info.block_size_bytes = t.block_size;
      info.capacity_bytes = t.capacity_bytes;
      info.block_count = t.block_count;
      info.generation_id = t.generation;
      info.snap_number = t.previous;
      out.push_back(info);
    }
    return out;
  });
}

namespace {

bool owner_taken(const State& s, const sim::Tracker& t) {
  if (!t.owner) return false;
  for (const sim::Snapshot& snap : s.snapshots)
    if (snap.id == *t.owner) return snap.taken;
  return false;
}

}  // namespace

Status SimModule::read_cbt_map(DevId dev, uint32_t offset_blocks, std::span<uint8_t> out) {
  return store_->read<void>([&](const State& s) -> Status {
    const char* op = "TRACKER_READ_CBT_MAP";
    auto it = s.trackers.find(dev);
    if (it == s.trackers.end()) return fail(module_error(op, device_subject(dev), ENODATA));
    const sim::Tracker& t = it->second;
    if (!owner_taken(s, t)) return fail(module_error(op, device_subject(dev), EPERM));
    if (t.map_corrupted) return fail(module_error(op, device_subject(dev), EFAULT));
    if (offset_blocks >= t.block_count) return fail(module_error(op, device_subject(dev), EINVAL));
    uint64_t available = t.block_count - offset_blocks;
    if (out.size() > available) {
      return fail(ErrorCode::kModule, std::string(op) + " of " + device_subject(dev) + " at block " +
                                          std::to_string(offset_blocks) + ": returned " + std::to_string(available) +
                                          " bytes, expected " + std::to_string(out.size()) +
                                          " (did the map shrink?)");
    }
    std::copy_n(t.read_map.begin() + offset_blocks, out.size(), out.begin());
    return {};
  });
}

Status SimModule::mark_dirty(DevId dev, std::span<const SectorRange> ranges) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    const char* op = "TRACKER_MARK_DIRTY_BLOCKS";
    DevId original = dev;
    if (dev.major == sim::kImageMajor) {
      sim::HeldDevice held = sim::find_image(s, dev);
      if (held.device == nullptr) return fail(module_error(op, device_subject(dev), ENODEV));
      original = held.device->dev;
    }
    auto it = s.trackers.find(original);
    if (it == s.trackers.end()) {
      // The real module opens the device before it looks for its tracker: a
      // device number nothing answers to is ENXIO, an untracked device ENODEV (lab).
      const bool exists = s.find_registered(original) != nullptr ||
                          ::access(("/sys/dev/block/" + to_string(original)).c_str(), F_OK) == 0;
      return fail(module_error(op, device_subject(dev), exists ? ENODEV : ENXIO));
    }
    sim::Tracker& t = it->second;
    for (const SectorRange& r : ranges) {
      if (r.count_sectors == 0) continue;
      uint64_t last_block = ((r.offset_sectors + r.count_sectors) * kSectorSize - 1) / t.block_size;
      if (last_block >= t.block_count) return fail(module_error(op, device_subject(dev), EINVAL));
      sim::raise_range(t, r.offset_sectors * kSectorSize, r.count_sectors * kSectorSize, /*both=*/true);
      dirty = true;
    }
    return {};
  });
}

Status SimModule::remove_tracker(DevId dev) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    const char* op = "TRACKER_REMOVE";
    if (!s.trackers.contains(dev)) return fail(module_error(op, device_subject(dev), ENODATA));
    if (sim::find_taken_device(s, dev).device != nullptr) return fail(module_error(op, device_subject(dev), EBUSY));
    // A created but untaken snapshot keeps the device: its take then gives an
    // image without copy-on-write (SEMANTICS.md §2 TRACKER_REMOVE trap).
    s.trackers.erase(dev);
    dirty = true;
    return {};
  });
}

Result<Uuid> SimModule::create_snapshot(std::span<const DevId> devices) {
  std::string subject;
  for (DevId d : devices) subject += (subject.empty() ? "" : ", ") + to_string(d);
  subject = (devices.size() == 1 ? "device " : "devices ") + (subject.empty() ? std::string("(none)") : subject);
  return store_->update<Uuid>([&](State& s, bool& dirty) -> Result<Uuid> {
    const char* op = "SNAPSHOT_CREATE";
    std::set<DevId> seen;
    for (DevId d : devices)
      if (!seen.insert(d).second) return fail(module_error(op, subject, EINVAL));
    Uuid id = sim::new_random_uuid();
    for (DevId d : devices) {
      if (s.trackers.contains(d)) {
        if (s.trackers.at(d).owner) return fail(module_error(op, subject, EALREADY));
        continue;
      }
      // A new tracker starts here; it stays even if a later device fails.
      auto fd = sim::open_registered(s, d, O_RDONLY);
      if (!fd) return fail(module_error(op, subject, fd.error().sys_errno() ? fd.error().sys_errno() : ENODEV));
      auto size = sim::device_size(fd->get(), to_string(d));
      if (!size) return fail(module_error(op, subject, size.error().sys_errno() ? size.error().sys_errno() : EIO));
      s.trackers.emplace(d, sim::new_tracker(d, *size));
      dirty = true;
    }
    sim::Snapshot snap;
    snap.id = id;
    for (DevId d : devices) {
      s.trackers.at(d).owner = id;
      sim::SnapDevice sd;
      sd.dev = d;
      snap.devices.push_back(sd);
    }
    // The empty diff storage asks for its minimum at once (SEMANTICS.md §4).
    sim::StoredEvent ev;
    ev.code = Event::Code::kLowFreeSpace;
    ev.requested_sectors = s.diff_storage_minimum_sectors;
    sim::queue_event(snap, ev);
    snap.requested_sectors = s.diff_storage_minimum_sectors;
    if (s.faults.list_bug)
      for (sim::Snapshot& other : s.snapshots) other.listed = false;
    s.snapshots.push_back(std::move(snap));
    dirty = true;
    return id;
  });
}

Status SimModule::destroy_snapshot(const Uuid& id) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    if (s.find_listed(id) == nullptr) return fail(module_error("SNAPSHOT_DESTROY", snapshot_subject(id), ENODEV));
    sim::release_snapshot(s, id);
    dirty = true;
    return {};
  });
}

Status SimModule::append_storage(const Uuid& id, DevId storage_dev, std::span<const SectorRange> ranges) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    const char* op = "SNAPSHOT_APPEND_STORAGE";
    sim::Snapshot* snap = s.find_listed(id);
    if (snap == nullptr) return fail(module_error(op, snapshot_subject(id), ESRCH));
    if (s.find_registered(storage_dev) == nullptr) return fail(module_error(op, snapshot_subject(id), ENODEV));
    // Like the module, no validation of the ranges at all.
    for (const SectorRange& r : ranges) {
      snap->ranges.push_back({storage_dev, r.offset_sectors, r.count_sectors});
      snap->capacity_sectors += r.count_sectors;
    }
    if (snap->low_space && snap->capacity_sectors >= snap->requested_sectors) snap->low_space = false;
    dirty = true;
    return {};
  });
}

Status SimModule::take_snapshot(const Uuid& id) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    const char* op = "SNAPSHOT_TAKE";
    sim::Snapshot* snap = s.find_listed(id);
    if (snap == nullptr) return fail(module_error(op, snapshot_subject(id), ESRCH));
    if (snap->taken) return fail(module_error(op, snapshot_subject(id), EALREADY));
    if (snap->devices.empty()) return fail(module_error(op, snapshot_subject(id), ENODEV));
    if (snap->capacity_sectors == 0) {
      // No in-memory diff storage in the shipped build: EFAULT, and the snapshot is gone.
      sim::release_snapshot(s, id);
      dirty = true;
      return fail(module_error(op, snapshot_subject(id), EFAULT));
    }
    std::vector<DevId> devs;
    for (const sim::SnapDevice& sd : snap->devices) devs.push_back(sd.dev);
    for (DevId d : devs) {
      auto it = s.trackers.find(d);
      bool tracked = it != s.trackers.end() && it->second.owner && *it->second.owner == id;
      Status st = tracked ? scan_at_take(s, d) : Status{};
      dirty = true;
      if (!st) {
        // A failed diff-area setup destroys the snapshot inside the ioctl.
        sim::release_snapshot(s, id);
        int err = st.error().sys_errno() ? st.error().sys_errno() : EIO;
        Error e = module_error(op, snapshot_subject(id), err);
        return fail(Error(e.code(), e.message() + " (" + st.error().message() + ")", err));
      }
      snap = s.find_listed(id);
      sim::start_copy_on_write(s, *snap, d, tracked);
    }
    sim::assign_image_minors(s, *snap);
    snap->taken = true;
    return {};
  });
}

Status SimModule::scan_at_take(State& s, DevId dev) {
  sim::Tracker& t = s.trackers.at(dev);
  const sim::RegistryEntry* entry = s.find_registered(dev);
  if (entry == nullptr) return fail(ErrorCode::kNotFound, "device " + to_string(dev) + " is not known", ENODEV);
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(entry->path, O_RDONLY));
  BLKVAULT_TRY_ASSIGN(uint64_t size, sim::device_size(fd.get(), entry->path));
  if (t.map_corrupted || sim::derive_geometry(size).capacity_bytes != t.capacity_bytes) sim::reset_tracker(t, size);
  // The stamp is taken before the scan, so a write racing the scan moves ctime
  // past it and forces the next rescan.
  BLKVAULT_TRY_ASSIGN(sim::FileStamp stamp, sim::take_stamp(fd.get(), entry->path));
  const bool regular = !entry->block_device;
  if (s.writes_only_through_sim(dev)) {
    // Declared written only through write(): nothing to find, nothing to check.
    t.fingerprints_valid = false;
    t.fingerprints.clear();
  } else if (!(t.fingerprints_valid && regular && sim::stamp_proves_unchanged(t.stamp, stamp))) {
    uint64_t bytes = 0;
    BLKVAULT_TRY_ASSIGN(std::vector<uint64_t> fps, sim::fingerprint_blocks(fd.get(), entry->path, t.capacity_bytes,
                                                                            t.block_size, 0, t.block_count, regular,
                                                                            &bytes));
    fingerprint_bytes_read_ += bytes;
    if (t.fingerprints_valid) {
      // Changed behind the simulation's back: raise like a write the filter saw.
      for (uint32_t b = 0; b < t.block_count; ++b)
        if (fps[b] != t.fingerprints[b]) t.write_map[b] = std::max(t.write_map[b], t.active);
    }
    t.fingerprints = std::move(fps);
    t.fingerprints_valid = true;
    t.stamp = stamp;
  }
  // The switch (SEMANTICS.md §3).
  t.read_map = t.write_map;
  t.previous = t.active;
  if (t.active == 255) {
    t.active = 1;
    std::fill(t.write_map.begin(), t.write_map.end(), 0);
    t.generation = sim::new_random_uuid();
  } else {
    ++t.active;
  }
  return {};
}

Result<std::vector<Uuid>> SimModule::snapshots() {
  return store_->read<std::vector<Uuid>>([](const State& s) -> Result<std::vector<Uuid>> {
    std::vector<Uuid> out;
    for (const sim::Snapshot& snap : s.snapshots)
      if (snap.listed) out.push_back(snap.id);
    return out;
  });
}

Result<std::vector<ImageInfo>> SimModule::snapshot_images(const Uuid& id) {
  return store_->read<std::vector<ImageInfo>>([&](const State& s) -> Result<std::vector<ImageInfo>> {
    const char* op = "SNAPSHOT_COLLECT_IMAGES";
    const sim::Snapshot* snap = s.find_listed(id);
    if (snap == nullptr) return fail(module_error(op, snapshot_subject(id), ESRCH));
    if (!snap->taken) return fail(module_error(op, snapshot_subject(id), ENODEV));
    std::vector<ImageInfo> out;
    for (const sim::SnapDevice& sd : snap->devices) {
      ImageInfo info;
      info.original = sd.dev;
      if (sd.image_minor) info.image = DevId{sim::kImageMajor, *sd.image_minor};
      out.push_back(info);
    }
    return out;
  });
}

Result<std::optional<Event>> SimModule::wait_event(const Uuid& id, uint32_t timeout_ms) {
  const char* op = "SNAPSHOT_WAIT_EVENT";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    BLKVAULT_TRY_ASSIGN(size_t pending, store_->read<size_t>([&](const State& s) -> Result<size_t> {
      const sim::Snapshot* snap = s.find_listed(id);
      if (snap == nullptr) return fail(module_error(op, snapshot_subject(id), ESRCH));
      return snap->events.size();
    }));
    if (pending > 0) {
      BLKVAULT_TRY_ASSIGN(std::optional<Event> ev,
                          store_->update<std::optional<Event>>([&](State& s, bool& dirty) -> Result<std::optional<Event>> {
                            sim::Snapshot* snap = s.find_listed(id);
                            if (snap == nullptr) return fail(module_error(op, snapshot_subject(id), ESRCH));
                            if (snap->events.empty()) return std::optional<Event>();  // another waiter won
                            sim::StoredEvent stored = snap->events.front();
                            snap->events.pop_front();
                            dirty = true;
                            Event e;
                            e.code = stored.code;
                            e.time_label_ns = stored.time_ns;
                            e.requested_sectors = stored.requested_sectors;
                            e.corrupted_device = stored.device;
                            e.error_code = stored.error_code;
                            return std::optional<Event>(e);
                          }));
      if (ev) return ev;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::optional<Event>();
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(deadline - now,
                                                                              std::chrono::milliseconds(5)));
  }
}

Result<Module::StorageExtents> SimModule::map_storage_file(const std::string& path) {
  const std::string what = "mapping diff-storage file " + path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail_errno(what);
  if (!S_ISREG(st.st_mode)) return fail(ErrorCode::kInvalidArgument, what + ": not a regular file");
  // As strict as the real module's FIEMAP mapping: no holes.
  if (static_cast<uint64_t>(st.st_blocks) * 512 < static_cast<uint64_t>(st.st_size)) {
    return fail(ErrorCode::kInvalidArgument, what + ": only " + std::to_string(uint64_t(st.st_blocks) * 512) + " of " +
                                                 std::to_string(st.st_size) +
                                                 " bytes are allocated (the file must be fully fallocated)");
  }
  return store_->update<StorageExtents>([&](State& s, bool& dirty) -> Result<StorageExtents> {
    BLKVAULT_TRY_ASSIGN(DevId dev, register_path(s, path, dirty, /*allow_block=*/false));
    StorageExtents out;
    out.storage_dev = dev;
    uint64_t sectors = static_cast<uint64_t>(st.st_size) / kSectorSize;
    if (sectors > 0) out.ranges.push_back({0, sectors});
    return out;
  });
}

Result<Module::StorageExtents> SimModule::map_storage_device(const std::string& path) {
  // The simulation's block devices are regular files: a file stands in for a
  // spare disk here, used whole (holes allowed: a disk has none to refuse).
  const std::string what = "difference storage device " + path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return fail(ErrorCode::kNotFound, what + ": no such device", ENOENT);
    return fail_errno(what);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument, what + ": not a block device (difference storage is a directory or a "
                                                    "whole block device)");
  }
  return store_->update<StorageExtents>([&](State& s, bool& dirty) -> Result<StorageExtents> {
    BLKVAULT_TRY_ASSIGN(DevId dev, register_path(s, path, dirty, /*allow_block=*/false));
    StorageExtents out;
    out.storage_dev = dev;
    const uint64_t sectors = static_cast<uint64_t>(st.st_size) / kSectorSize;
    if (sectors > 0) out.ranges.push_back({0, sectors});
    return out;
  });
}

// ---- fault injection and inspection ----

Status SimModule::drop_state() {
  return store_->update<void>([](State& s, bool& dirty) -> Status {
    s.trackers.clear();
    s.snapshots.clear();
    dirty = true;
    return {};
  });
}

Status SimModule::set_storage_limit(std::optional<uint64_t> max_sectors) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    s.faults.storage_limit_sectors = max_sectors;
    dirty = true;
    return {};
  });
}

Status SimModule::inject_read_error(DevId device, uint64_t offset_bytes, uint64_t length_bytes) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    s.faults.read_errors.push_back({device, offset_bytes, length_bytes});
    dirty = true;
    return {};
  });
}

Status SimModule::lose_next_write(DevId device) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    s.faults.lose_next_write.push_back(device);
    dirty = true;
    return {};
  });
}

Status SimModule::lose_writes_in(DevId device, uint64_t offset_bytes, uint64_t length_bytes) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    s.faults.lose_ranges.push_back({device, offset_bytes, length_bytes});
    dirty = true;
    return {};
  });
}

Status SimModule::set_list_bug(bool on) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    s.faults.list_bug = on;
    dirty = true;
    return {};
  });
}

Status SimModule::set_outside_writes(const std::string& device_path, bool detect) {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    BLKVAULT_TRY_ASSIGN(DevId dev, register_path(s, device_path, dirty, /*allow_block=*/true));
    auto& list = s.sim_writes_only;
    if (s.writes_only_through_sim(dev) != detect) return {};  // already so
    dirty = true;
    if (detect) {
      // Fingerprints are made afresh at the next take (no change found then:
      // none could happen outside while declared so).
      list.erase(std::remove(list.begin(), list.end(), dev), list.end());
      return {};
    }
    list.push_back(dev);
    if (auto t = s.trackers.find(dev); t != s.trackers.end()) {
      t->second.fingerprints_valid = false;
      t->second.fingerprints.clear();
    }
    return {};
  });
}

Status SimModule::clear_faults() {
  return store_->update<void>([&](State& s, bool& dirty) -> Status {
    s.faults = {};
    dirty = true;
    return {};
  });
}

Result<SimView> SimModule::inspect() {
  return store_->read<SimView>([](const State& s) -> Result<SimView> {
    SimView v;
    for (const auto& [dev, t] : s.trackers) {
      SimTrackerView tv;
      tv.info = {dev, t.block_size, t.capacity_bytes, t.block_count, t.generation, t.previous};
      if (const sim::RegistryEntry* e = s.find_registered(dev)) tv.path = e->path;
      tv.active = t.active;
      tv.map_corrupted = t.map_corrupted;
      tv.owner = t.owner;
      v.trackers.push_back(std::move(tv));
    }
    for (DevId dev : s.sim_writes_only)
      if (const sim::RegistryEntry* e = s.find_registered(dev)) v.sim_writes_only.push_back(e->path);
    for (const sim::Snapshot& snap : s.snapshots) {
      SimSnapshotView sv;
      sv.id = snap.id;
      sv.listed = snap.listed;
      sv.taken = snap.taken;
      for (const sim::SnapDevice& sd : snap.devices) {
        SimSnapshotDeviceView dv;
        dv.original = sd.dev;
        if (sd.image_minor) dv.image = DevId{sim::kImageMajor, *sd.image_minor};
        dv.cow_chunks = sd.cow.size();
        dv.corrupted = sd.corrupted;
        dv.corrupt_errno = sd.corrupt_errno;
        sv.devices.push_back(dv);
      }
      sv.capacity_sectors = snap.capacity_sectors;
      sv.filled_sectors = snap.filled_sectors;
      sv.requested_sectors = snap.requested_sectors;
      sv.low_space = snap.low_space;
      sv.overflow = snap.overflow;
      sv.pending_events = snap.events.size();
      v.snapshots.push_back(std::move(sv));
    }
    v.diff_storage_minimum_sectors = s.diff_storage_minimum_sectors;
    v.list_bug = s.faults.list_bug;
    v.storage_limit_sectors = s.faults.storage_limit_sectors;
    v.read_faults = s.faults.read_errors.size();
    v.lost_writes_pending = s.faults.lose_next_write.size();
    return v;
  });
}

}  // namespace blkvault::kernel
