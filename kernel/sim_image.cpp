// Snapshot images of the simulated module. An image read assembles each CBT
// block it touches from the diff storage (chunks copied on write) and the device
// (everything else), checks the block against its take-time fingerprint, and only
// then hands out bytes: a block changed behind the simulation's back, or a
// damaged diff storage, corrupts the image instead of returning mixed data.
#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "common/direct_read.h"
#include "common/file_io.h"
#include "kernel/sim_device.h"
#include "kernel/sim_internal.h"
#include "kernel/sim_module.h"

namespace blkvault::kernel {
namespace {

using sim::SnapDevice;
using sim::Snapshot;
using sim::State;

struct Located {
  const Snapshot* snapshot = nullptr;
  const SnapDevice* device = nullptr;
};

// The image's snapshot device, if the snapshot (listed or not) still holds it.
Located locate(const State& s, const Uuid& id, DevId original, uint32_t minor) {
  for (const Snapshot& snap : s.snapshots) {
    if (snap.id != id || !snap.taken) continue;
    for (const SnapDevice& sd : snap.devices)
      if (sd.dev == original && sd.image_minor && *sd.image_minor == minor) return {&snap, &sd};
  }
  return {};
}

// Thread-safe: each read takes its own shared flock; the storage fd cache has a mutex.
class SimImageReader final : public ImageReader {
 public:
  SimImageReader(std::shared_ptr<sim::StateStore> store, Uuid snapshot, DevId original, DevId image, uint64_t size,
                 std::string path, std::string device_path, UniqueFd device_fd)
      : store_(std::move(store)),
        snapshot_(snapshot),
        original_(original),
        image_(image),
        size_(size),
        path_(std::move(path)),
        device_path_(std::move(device_path)),
        device_fd_(std::move(device_fd)),
        direct_(device_fd_.get()) {}

  uint64_t size_bytes() const override { return size_; }
  const std::string& path() const override { return path_; }
  uint64_t direct_bytes() const override { return direct_.direct_bytes(); }

  Status read_at(uint64_t offset, std::span<uint8_t> data) override {
    if (offset > size_ || data.size() > size_ - offset) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("reading image {} at offset {}: {} bytes past its end ({})",
                                                           path_, offset, data.size(), size_));
    }
    bool changed_outside = false;
    {
      BLKVAULT_TRY_ASSIGN(sim::FileLock lock, sim::FileLock::acquire(store_->lock_path(), false));
      BLKVAULT_TRY_ASSIGN(std::shared_ptr<const State> state, store_->load_locked());
      Located at = locate(*state, snapshot_, original_, image_.minor);
      if (at.device == nullptr) return io_error(offset, ENXIO);  // destroyed: the gendisk is gone
      // The real image fails every request with BLK_STS_NOSPC, which a buffered
      // read (IoctlModule's reader) sees as EIO (lab: docs/SIMULATION.md).
      if (at.device->corrupted) return io_error(offset, EIO);
      for (const sim::ReadFault& f : state->faults.read_errors) {
        if (f.device == original_ && f.offset_bytes < offset + data.size() && offset < f.offset_bytes + f.length_bytes)
          return io_error(offset, EIO);
      }
      if (data.empty()) return {};
      if (!at.device->tracked) {
        // The tracker was removed between create and take: no copy-on-write.
        return direct_.pread(device_fd_.get(), data, offset, device_path_).map([](size_t) {});
      }
      BLKVAULT_TRY_ASSIGN(changed_outside, assemble(*state, *at.device, offset, data));
    }
    if (changed_outside) {
      // Like an I/O error on the original: the device is corrupted for good.
      BLKVAULT_TRY(store_->update<void>([&](State& s, bool& dirty) -> Status {
        for (Snapshot& snap : s.snapshots) {
          if (snap.id != snapshot_) continue;
          for (SnapDevice& sd : snap.devices) {
            if (sd.dev == original_ && !sd.corrupted) {
              sim::corrupt_device(snap, sd, EIO);
              dirty = true;
            }
          }
        }
        return {};
      }));
      return io_error(offset, EIO);
    }
    return {};
  }

 private:
  Status io_error(uint64_t offset, int err) const {
    return fail(Error(ErrorCode::kIo, fmt::format("reading image {} at offset {}: {}", path_, offset, std::strerror(err)),
                      err));
  }

  // Fills `data` (image bytes at `offset`) block by block; returns true when a
  // block does not match its take-time fingerprint. REQUIRES: the shared lock.
  Result<bool> assemble(const State& s, const SnapDevice& sd, uint64_t offset, std::span<uint8_t> data) {
    const uint64_t bs = sd.block_size;
    const uint64_t end = offset + data.size();
    // The device's bytes of the whole range in one read (as the real image
    // reads the original below its copy-on-write chunks), then the chunks
    // copied on write laid over them block by block.
    const bool prefilled = offset % bs == 0 && (end % bs == 0 || end == sd.capacity_bytes);
    if (prefilled) BLKVAULT_TRY(read_device(data, offset));
    std::vector<uint8_t> tmp;
    for (uint64_t b = offset / bs; b <= (end - 1) / bs; ++b) {
      const uint64_t bstart = b * bs;
      const uint64_t blen = std::min(bs, sd.capacity_bytes - bstart);
      std::span<uint8_t> block;
      const bool inside = bstart >= offset && bstart + blen <= end;
      if (inside) {
        block = data.subspan(bstart - offset, blen);
      } else {
        tmp.resize(blen);
        block = {tmp.data(), blen};
      }
      BLKVAULT_TRY(fill_block(s, sd, bstart, block, /*device_read=*/prefilled && inside));
      if (b < sd.fingerprints.size() && sim::block_fingerprint(block) != sd.fingerprints[b]) return true;
      if (!inside) {
        const uint64_t from = std::max(offset, bstart);
        const uint64_t to = std::min(end, bstart + blen);
        std::memcpy(data.data() + (from - offset), block.data() + (from - bstart), to - from);
      }
    }
    return false;
  }

  // The original device's bytes at `at`, zeros past its end.
  Status read_device(std::span<uint8_t> out, uint64_t at) {
    BLKVAULT_TRY_ASSIGN(size_t got, direct_.pread(device_fd_.get(), out, at, device_path_, true));
    std::fill(out.begin() + static_cast<ptrdiff_t>(got), out.end(), 0);
    return {};
  }

  // Reads the image bytes [pos, pos + out.size()), chunk by chunk; with
  // `device_read`, `out` holds the device's bytes already and only the chunks
  // copied on write are read.
  Status fill_block(const State& s, const SnapDevice& sd, uint64_t pos, std::span<uint8_t> out, bool device_read) {
    const uint64_t chunk = sd.chunk_size;
    uint64_t done = 0;
    while (done < out.size()) {
      const uint64_t at = pos + done;
      const uint64_t c = at / chunk;
      const uint64_t n = std::min<uint64_t>(out.size() - done, (c + 1) * chunk - at);
      std::span<uint8_t> piece = out.subspan(done, n);
      auto cow = sd.cow.find(c);
      if (cow != sd.cow.end()) {
        BLKVAULT_TRY_ASSIGN(int fd, storage_fd(s, cow->second.storage_dev));
        uint64_t where = cow->second.sector * kSectorSize + (at - c * chunk);
        BLKVAULT_TRY_ASSIGN(size_t got, pread_full(fd, piece, where, "diff storage", true));
        std::fill(piece.begin() + static_cast<ptrdiff_t>(got), piece.end(), 0);
      } else if (!device_read) {
        BLKVAULT_TRY(read_device(piece, at));
      }
      done += n;
    }
    return {};
  }

  Result<int> storage_fd(const State& s, DevId dev) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = storage_fds_.find(dev);
    if (it == storage_fds_.end()) {
      BLKVAULT_TRY_ASSIGN(UniqueFd fd, sim::open_registered(s, dev, O_RDONLY));
      it = storage_fds_.emplace(dev, std::move(fd)).first;
    }
    return it->second.get();
  }

  std::shared_ptr<sim::StateStore> store_;
  const Uuid snapshot_;
  const DevId original_;
  const DevId image_;
  const uint64_t size_;
  const std::string path_;
  const std::string device_path_;
  UniqueFd device_fd_;
  DirectReads direct_;  // the device's file with O_DIRECT
  std::mutex mu_;  // guards storage_fds_
  std::map<DevId, UniqueFd> storage_fds_;
};

}  // namespace

Result<std::unique_ptr<ImageReader>> SimModule::open_image(DevId image) {
  const std::string path = "sim:" + store_->dir() + "/veeamblksnapimg" + std::to_string(image.minor);
  struct Found {
    Uuid id{};
    DevId original;
    uint64_t capacity = 0;
    std::string device_path;
  };
  BLKVAULT_TRY_ASSIGN(Found found, store_->read<Found>([&](const State& s) -> Result<Found> {
    for (const Snapshot& snap : s.snapshots) {
      if (!snap.taken || image.major != sim::kImageMajor) continue;
      for (const SnapDevice& sd : snap.devices) {
        if (!sd.image_minor || *sd.image_minor != image.minor) continue;
        const sim::RegistryEntry* e = s.find_registered(sd.dev);
        if (e == nullptr) break;
        return Found{snap.id, sd.dev, sd.capacity_bytes, e->path};
      }
    }
    return fail(Error::from_errno("opening image " + path, ENOENT));
  }));
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(found.device_path, O_RDONLY));
  return std::unique_ptr<ImageReader>(new SimImageReader(store_, found.id, found.original, image, found.capacity, path,
                                                         found.device_path, std::move(fd)));
}

}  // namespace blkvault::kernel
