// The write path of the simulated module: what the kernel filter does with a
// write bio (copy-on-write into the diff storage of a taken snapshot, then the
// write, then the CBT write map), plus keeping the block fingerprints current.
#include <fcntl.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "common/file_io.h"
#include "kernel/sim_device.h"
#include "kernel/sim_internal.h"
#include "kernel/sim_module.h"

namespace blkvault::kernel {
namespace {

using sim::SnapDevice;
using sim::Snapshot;
using sim::State;

// Copies the take-time contents of every chunk of [offset, offset + length) not
// yet copied into the diff storage. On overflow or a storage I/O error the device
// is corrupted (one event) and copy-on-write stops; the caller's write goes on.
Status copy_on_write(State& s, Snapshot& snap, SnapDevice& sd, int device_fd, const std::string& device_path,
                     uint64_t offset, uint64_t length) {
  const uint64_t chunk = sd.chunk_size;
  if (chunk == 0 || offset >= sd.capacity_bytes) return {};
  const uint64_t end = std::min(offset + length, sd.capacity_bytes);
  std::vector<uint8_t> buf(chunk);
  std::map<DevId, UniqueFd> storage_fds;
  for (uint64_t c = offset / chunk; c <= (end - 1) / chunk; ++c) {
    if (sd.cow.contains(c)) continue;
    std::optional<sim::ChunkLocation> loc =
        sim::allocate_chunk(snap, chunk / kSectorSize, s.faults, s.diff_storage_minimum_sectors);
    if (!loc) {
      sim::corrupt_device(snap, sd, ENOSPC);
      return {};
    }
    const uint64_t start = c * chunk;
    const uint64_t n = std::min(chunk, sd.capacity_bytes - start);
    BLKVAULT_TRY_ASSIGN(size_t got, pread_full(device_fd, {buf.data(), n}, start, device_path, true));
    std::fill(buf.begin() + static_cast<ptrdiff_t>(got), buf.begin() + static_cast<ptrdiff_t>(n), 0);
    auto it = storage_fds.find(loc->storage_dev);
    if (it == storage_fds.end()) {
      auto fd = sim::open_registered(s, loc->storage_dev, O_RDWR);
      if (!fd) {
        sim::corrupt_device(snap, sd, EIO);
        return {};
      }
      it = storage_fds.emplace(loc->storage_dev, std::move(*fd)).first;
    }
    if (!pwrite_full(it->second.get(), {buf.data(), n}, loc->sector * kSectorSize, "diff storage")) {
      sim::corrupt_device(snap, sd, EIO);
      return {};
    }
    sd.cow.emplace(c, *loc);
  }
  return {};
}

}  // namespace

Status SimModule::write(const std::string& device_path, uint64_t offset_bytes, std::span<const uint8_t> data) {
  auto body = [&](State& s, bool& dirty) -> Status {
    BLKVAULT_TRY_ASSIGN(DevId dev, register_path(s, device_path, dirty, /*allow_block=*/true));
    const std::string path = s.find_registered(dev)->path;
    BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDWR));
    BLKVAULT_TRY_ASSIGN(uint64_t file_size, sim::device_size(fd.get(), path));
    // Like a loop device over the file: whole sectors only.
    const uint64_t size = file_size / kSectorSize * kSectorSize;
    if (offset_bytes > size || data.size() > size - offset_bytes) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("writing {} bytes at offset {} of {}: beyond the end of the device ({} bytes)",
                              data.size(), offset_bytes, path, size));
    }
    if (data.empty()) return {};
    auto tracker = s.trackers.find(dev);
    if (tracker != s.trackers.end()) {
      sim::HeldDevice held = sim::find_taken_device(s, dev);
      if (held.device != nullptr && held.device->tracked && !held.device->corrupted && tracker->second.owner &&
          *tracker->second.owner == held.snapshot->id) {
        dirty = true;
        BLKVAULT_TRY(copy_on_write(s, *held.snapshot, *held.device, fd.get(), path, offset_bytes, data.size()));
      }
    }
    BLKVAULT_TRY(pwrite_full(fd.get(), data, offset_bytes, path));
    if (tracker == s.trackers.end()) return {};
    dirty = true;
    sim::Tracker& t = tracker->second;
    auto lost = std::find(s.faults.lose_next_write.begin(), s.faults.lose_next_write.end(), dev);
    if (lost != s.faults.lose_next_write.end()) {
      s.faults.lose_next_write.erase(lost);  // a lying CBT: nothing recorded
    } else {
      // The pieces of the write outside every lost range of this device.
      std::vector<std::pair<uint64_t, uint64_t>> marked = {{offset_bytes, offset_bytes + data.size()}};
      for (const sim::ReadFault& f : s.faults.lose_ranges) {
        if (f.device != dev) continue;
        std::vector<std::pair<uint64_t, uint64_t>> next;
        for (auto [b, e] : marked) {
          const uint64_t lb = f.offset_bytes, le = f.offset_bytes + f.length_bytes;
          if (le <= b || lb >= e) {
            next.emplace_back(b, e);
            continue;
          }
          if (b < lb) next.emplace_back(b, lb);
          if (le < e) next.emplace_back(le, e);
        }
        marked = std::move(next);
      }
      for (auto [b, e] : marked) sim::raise_range(t, b, e - b, /*both=*/false);
    }
    if (t.fingerprints_valid && t.block_size > 0) {
      uint64_t first = offset_bytes / t.block_size;
      uint64_t last = std::min<uint64_t>((offset_bytes + data.size() - 1) / t.block_size, t.block_count - 1);
      if (first <= last && last < t.block_count) {
        uint64_t bytes = 0;
        BLKVAULT_TRY_ASSIGN(std::vector<uint64_t> fps,
                            sim::fingerprint_blocks(fd.get(), path, t.capacity_bytes, t.block_size,
                                                    static_cast<uint32_t>(first), static_cast<uint32_t>(last - first + 1),
                                                    !s.find_registered(dev)->block_device, &bytes));
        fingerprint_bytes_read_ += bytes;
        std::copy(fps.begin(), fps.end(), t.fingerprints.begin() + static_cast<ptrdiff_t>(first));
      }
      BLKVAULT_TRY_ASSIGN(t.stamp, sim::take_stamp(fd.get(), path));
    }
    return {};
  };
  return store_->update<void>(body);
}

}  // namespace blkvault::kernel
