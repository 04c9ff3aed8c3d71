#include "kernel/ioctl_module.h"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/direct_read.h"
#include "common/file_io.h"

namespace blkvault::kernel {

namespace {

abi::DevT to_abi(DevId dev) { return abi::DevT{dev.major, dev.minor}; }
DevId from_abi(abi::DevT dev) { return DevId{dev.mj, dev.mn}; }

std::vector<abi::BlockRange> to_abi(std::span<const SectorRange> ranges) {
  std::vector<abi::BlockRange> out;
  out.reserve(ranges.size());
  for (const SectorRange& r : ranges) out.push_back(abi::BlockRange{r.offset_sectors, r.count_sectors});
  return out;
}

std::string devices_subject(std::span<const DevId> devices) {
  std::string s = devices.size() == 1 ? "device " : "devices ";
  for (size_t i = 0; i < devices.size(); ++i) {
    if (i > 0) s += ", ";
    s += to_string(devices[i]);
  }
  if (devices.empty()) s += "(none)";
  return s;
}

Error probe_race_error(const char* operation, std::string subject) {
  std::string message = operation;
  if (!subject.empty()) message += " of " + subject;
  message += ": the count kept changing between probe and fetch (" +
             std::to_string(IoctlModule::kMaxProbeRounds) + " tries)";
  return Error(ErrorCode::kModule, std::move(message));
}

// Reads one image node with pread, aligned reads with O_DIRECT (the backup's
// segments: common/direct_read.h). Thread-safe: pread only.
class FdImageReader final : public ImageReader {
 public:
  FdImageReader(UniqueFd fd, std::string path, uint64_t size)
      : fd_(std::move(fd)), direct_(fd_.get()), path_(std::move(path)), size_(size) {}
  uint64_t size_bytes() const override { return size_; }
  const std::string& path() const override { return path_; }
  uint64_t direct_bytes() const override { return direct_.direct_bytes(); }
  Status read_at(uint64_t offset, std::span<uint8_t> data) override {
    auto r = direct_.pread(fd_.get(), data, offset, "reading image " + path_ + " at offset " + std::to_string(offset));
    if (!r) {
      Error e = std::move(r).error();
      // Any failure here (EIO, ENOSPC of a corrupted image) is an I/O error of the
      // image, not a full disk of ours.
      return fail(std::move(e).with_code(ErrorCode::kIo));
    }
    return {};
  }

 private:
  UniqueFd fd_;
  DirectReads direct_;
  std::string path_;
  uint64_t size_;
};

}  // namespace

Error control_open_error(const std::string& control_path, int err) {
  std::string message = "opening " + control_path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return Error(ErrorCode::kModule,
                   message + " (is the veeamblksnap module loaded? try 'modprobe veeamblksnap', or use --module sim:DIR)",
                   err);
    case EACCES:
    case EPERM: return Error(ErrorCode::kPermission, message + " (run as root)", err);
    default: return Error(ErrorCode::kModule, std::move(message), err);
  }
}

IoctlModule::IoctlModule(std::unique_ptr<IoctlTransport> transport, IoctlModuleOptions options)
    : transport_(std::move(transport)), options_(std::move(options)) {}

Result<std::unique_ptr<Module>> IoctlModule::open(const std::string& control_path) {
  auto transport = SystemTransport::open(control_path);
  if (!transport) return fail(control_open_error(control_path, transport.error().sys_errno()));
  IoctlModuleOptions options;
  options.control_path = control_path;
  std::unique_ptr<IoctlModule> module(new IoctlModule(std::move(*transport), std::move(options)));
  abi::Version v{};
  int ret = module->transport_->call(abi::kIoctlVersion, &v);
  if (ret < 0) return fail(module_error("VERSION", control_path, -ret));
  module->opened_version_ = Version{v.major, v.minor, v.revision, v.build};
  return std::unique_ptr<Module>(std::move(module));
}

std::unique_ptr<IoctlModule> IoctlModule::with_transport(std::unique_ptr<IoctlTransport> transport,
                                                         IoctlModuleOptions options) {
  return std::unique_ptr<IoctlModule>(new IoctlModule(std::move(transport), std::move(options)));
}

std::string IoctlModule::description() const {
  if (opened_version_) return "veeamblksnap " + to_string(*opened_version_) + " (" + options_.control_path + ")";
  return "veeamblksnap (" + options_.control_path + ")";
}

Result<int> IoctlModule::call(unsigned long request, void* arg, const std::string& subject) {
  int ret = transport_->call(request, arg);
  if (ret < 0) return fail(module_error(abi::ioctl_name(_IOC_NR(request)), subject, -ret));
  return ret;
}

Result<Version> IoctlModule::version() {
  abi::Version v{};
  BLKVAULT_TRY(call(abi::kIoctlVersion, &v, ""));
  return Version{v.major, v.minor, v.revision, v.build};
}

Result<DevId> IoctlModule::device_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    Error e = Error::from_errno("resolving device " + path, err);
    if (err == ENOENT || err == ENOTDIR) return fail(std::move(e).with_code(ErrorCode::kNotFound));
    return fail(std::move(e));
  }
  if (!S_ISBLK(st.st_mode)) return fail(ErrorCode::kInvalidArgument, "resolving device " + path + ": not a block device");
  return DevId{major(st.st_rdev), minor(st.st_rdev)};
}

Result<std::string> IoctlModule::device_path(DevId dev) {
  // sysfs files report st_size 4096 whatever their length: read what there is.
  auto fd = open_file(options_.sys_dev_block_dir + "/" + to_string(dev) + "/uevent", O_RDONLY);
  std::string buffer(4096, '\0');
  auto got = fd ? pread_full(fd->get(), {reinterpret_cast<uint8_t*>(buffer.data()), buffer.size()}, 0, "uevent", true)
                : Result<size_t>(fail(std::move(fd).error()));
  if (got) {
    std::string_view text(buffer.data(), *got);
    while (!text.empty()) {
      size_t eol = text.find('\n');
      std::string_view line = text.substr(0, eol);
      if (line.starts_with("DEVNAME=") && line.size() > 8) return options_.dev_dir + "/" + std::string(line.substr(8));
      if (eol == std::string_view::npos) break;
      text.remove_prefix(eol + 1);
    }
  }
  return to_string(dev);
}

Result<std::vector<CbtInfo>> IoctlModule::tracked_devices() {
  for (int round = 0; round < kMaxProbeRounds; ++round) {
    abi::TrackerCollect probe{};
    probe.count = 0;
    probe.cbt_info_array = nullptr;
    BLKVAULT_TRY(call(abi::kIoctlTrackerCollect, &probe, ""));
    if (probe.count == 0) return std::vector<CbtInfo>{};

    std::vector<abi::CbtInfo> raw(probe.count);
    abi::TrackerCollect fetch{};
    fetch.count = probe.count;
    fetch.cbt_info_array = raw.data();
    int ret = transport_->call(abi::kIoctlTrackerCollect, &fetch);
    if (ret == -ENOBUFS) continue;  // a tracker appeared between probe and fetch
    if (ret < 0) return fail(module_error("TRACKER_COLLECT", "", -ret));
    raw.resize(std::min<size_t>(fetch.count, raw.size()));

    std::vector<CbtInfo> out;
    out.reserve(raw.size());
    for (const abi::CbtInfo& r : raw) {
      CbtInfo info;
      info.dev = from_abi(r.dev_id);
      info.block_size_bytes = r.blk_size;
      info.capacity_bytes = r.device_capacity;
      info.block_count = r.blk_count;
      std::copy(r.generation_id.begin(), r.generation_id.end(), info.generation_id.begin());
      info.snap_number = r.snap_number;
      out.push_back(info);
    }
    return out;
  }
  return fail(probe_race_error("TRACKER_COLLECT", ""));
}

Status IoctlModule::read_cbt_map(DevId dev, uint32_t offset_blocks, std::span<uint8_t> out) {
  if (uint64_t{offset_blocks} + out.size() > UINT32_MAX) {
    return fail(ErrorCode::kInvalidArgument, "TRACKER_READ_CBT_MAP of " + device_subject(dev) +
                                                 ": range beyond the 32-bit block index");
  }
  uint64_t done = 0;
  while (done < out.size()) {
    uint32_t length = static_cast<uint32_t>(std::min<uint64_t>(options_.read_chunk_bytes, out.size() - done));
    abi::TrackerReadCbtBitmap arg{};
    arg.dev_id = to_abi(dev);
    arg.offset = static_cast<uint32_t>(offset_blocks + done);
    arg.length = length;
    arg.buff = out.data() + done;
    BLKVAULT_TRY_ASSIGN(int ret, call(abi::kIoctlTrackerReadCbtMap, &arg, device_subject(dev)));
    if (static_cast<uint32_t>(ret) != length) {
      // Worded for the caller's whole request, not the chunk, so that the text does
      // not depend on read_chunk_bytes and reads like SimModule's.
      return fail(ErrorCode::kModule, "TRACKER_READ_CBT_MAP of " + device_subject(dev) + " at block " +
                                          std::to_string(offset_blocks) + ": returned " +
                                          std::to_string(done + static_cast<uint32_t>(std::max(ret, 0))) +
                                          " bytes, expected " + std::to_string(out.size()) +
                                          " (did the map shrink?)");
    }
    done += length;
  }
  return {};
}

Status IoctlModule::mark_dirty(DevId dev, std::span<const SectorRange> ranges) {
  std::vector<abi::BlockRange> raw = to_abi(ranges);
  abi::TrackerMarkDirtyBlocks arg{};
  arg.dev_id = to_abi(dev);
  arg.count = static_cast<uint32_t>(raw.size());
  arg.dirty_blocks_array = raw.data();
  BLKVAULT_TRY(call(abi::kIoctlTrackerMarkDirtyBlocks, &arg, device_subject(dev)));
  return {};
}

Status IoctlModule::remove_tracker(DevId dev) {
  abi::TrackerRemove arg{};
  arg.dev_id = to_abi(dev);
  BLKVAULT_TRY(call(abi::kIoctlTrackerRemove, &arg, device_subject(dev)));
  return {};
}

Result<Uuid> IoctlModule::create_snapshot(std::span<const DevId> devices) {
  std::vector<abi::DevT> raw;
  raw.reserve(devices.size());
  for (DevId d : devices) raw.push_back(to_abi(d));
  abi::SnapshotCreate arg{};
  arg.count = static_cast<uint32_t>(raw.size());
  arg.dev_id_array = raw.data();
  BLKVAULT_TRY(call(abi::kIoctlSnapshotCreate, &arg, devices_subject(devices)));
  Uuid id;
  std::copy(arg.id.begin(), arg.id.end(), id.begin());
  return id;
}

Status IoctlModule::destroy_snapshot(const Uuid& id) {
  abi::SnapshotDestroy arg{};
  std::copy(id.begin(), id.end(), arg.id.begin());
  BLKVAULT_TRY(call(abi::kIoctlSnapshotDestroy, &arg, snapshot_subject(id)));
  return {};
}

Status IoctlModule::append_storage(const Uuid& id, DevId storage_dev, std::span<const SectorRange> ranges) {
  std::vector<abi::BlockRange> raw = to_abi(ranges);
  abi::SnapshotAppendStorage arg{};
  std::copy(id.begin(), id.end(), arg.id.begin());
  arg.dev_id = to_abi(storage_dev);
  arg.count = static_cast<uint32_t>(raw.size());
  arg.ranges = raw.data();
  BLKVAULT_TRY(call(abi::kIoctlSnapshotAppendStorage, &arg, snapshot_subject(id)));
  return {};
}

Status IoctlModule::take_snapshot(const Uuid& id) {
  abi::SnapshotTake arg{};
  std::copy(id.begin(), id.end(), arg.id.begin());
  BLKVAULT_TRY(call(abi::kIoctlSnapshotTake, &arg, snapshot_subject(id)));
  return {};
}

Result<std::vector<Uuid>> IoctlModule::snapshots() {
  for (int round = 0; round < kMaxProbeRounds; ++round) {
    abi::SnapshotCollect probe{};
    probe.ids = nullptr;
    BLKVAULT_TRY(call(abi::kIoctlSnapshotCollect, &probe, ""));
    if (probe.count == 0) return std::vector<Uuid>{};

    std::vector<abi::RawUuid> raw(probe.count);
    abi::SnapshotCollect fetch{};
    fetch.count = probe.count;
    fetch.ids = raw.data();
    int ret = transport_->call(abi::kIoctlSnapshotCollect, &fetch);
    // Too small: ENODATA with count = our capacity (not the size needed).
    if (ret == -ENODATA) continue;
    if (ret < 0) return fail(module_error("SNAPSHOT_COLLECT", "", -ret));
    raw.resize(std::min<size_t>(fetch.count, raw.size()));
    std::vector<Uuid> out(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) std::copy(raw[i].begin(), raw[i].end(), out[i].begin());
    return out;
  }
  return fail(probe_race_error("SNAPSHOT_COLLECT", ""));
}

Result<std::vector<ImageInfo>> IoctlModule::snapshot_images(const Uuid& id) {
  std::string subject = snapshot_subject(id);
  abi::SnapshotCollectImages probe{};
  std::copy(id.begin(), id.end(), probe.id.begin());
  probe.image_info_array = nullptr;
  BLKVAULT_TRY(call(abi::kIoctlSnapshotCollectImages, &probe, subject));
  uint32_t want = probe.count;
  for (int round = 0; round < kMaxProbeRounds; ++round) {
    if (want == 0) return std::vector<ImageInfo>{};
    std::vector<abi::ImageInfo> raw(want);
    abi::SnapshotCollectImages fetch{};
    std::copy(id.begin(), id.end(), fetch.id.begin());
    fetch.count = want;
    fetch.image_info_array = raw.data();
    int ret = transport_->call(abi::kIoctlSnapshotCollectImages, &fetch);
    if (ret == -ENODATA && fetch.count > want) {  // too small: count = the required size
      want = fetch.count;
      continue;
    }
    if (ret < 0) return fail(module_error("SNAPSHOT_COLLECT_IMAGES", subject, -ret));
    raw.resize(std::min<size_t>(fetch.count, raw.size()));
    std::vector<ImageInfo> out;
    out.reserve(raw.size());
    for (const abi::ImageInfo& r : raw) out.push_back(ImageInfo{from_abi(r.orig_dev_id), from_abi(r.image_dev_id)});
    return out;
  }
  return fail(probe_race_error("SNAPSHOT_COLLECT_IMAGES", subject));
}

Result<std::optional<Event>> IoctlModule::wait_event(const Uuid& id, uint32_t timeout_ms) {
  // One page; heap-allocated so the event thread's stack stays small.
  auto arg = std::make_unique<abi::SnapshotEvent>();
  std::memset(arg.get(), 0, sizeof(abi::SnapshotEvent));
  std::copy(id.begin(), id.end(), arg->id.begin());
  arg->timeout_ms = timeout_ms;
  int ret = transport_->call(abi::kIoctlSnapshotWaitEvent, arg.get());
  if (ret == -ENOENT || ret == -EINTR) return std::optional<Event>{};
  if (ret < 0) return fail(module_error("SNAPSHOT_WAIT_EVENT", snapshot_subject(id), -ret));

  Event event;
  event.time_label_ns = arg->time_label;
  switch (arg->code) {
    case abi::kEventLowFreeSpace: {
      abi::EventLowFreeSpace body;
      std::memcpy(&body, arg->data, sizeof body);
      event.code = Event::Code::kLowFreeSpace;
      event.requested_sectors = body.requested_nr_sect;
      break;
    }
    case abi::kEventCorrupted: {
      abi::EventCorrupted body;
      std::memcpy(&body, arg->data, sizeof body);
      event.code = Event::Code::kCorrupted;
      event.corrupted_device = from_abi(body.orig_dev_id);
      event.error_code = body.err_code;
      break;
    }
    default:
      return fail(ErrorCode::kModule, "SNAPSHOT_WAIT_EVENT of " + snapshot_subject(id) + ": unknown event code " +
                                          std::to_string(arg->code));
  }
  return std::optional<Event>(event);
}

namespace {

// Opens `path` read-only if it is the block device `rdev`. Returns an invalid fd
// when the node is missing or is another device (udev may not have caught up).
Result<UniqueFd> open_if_node_of(const std::string& path, dev_t rdev) {
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT || errno == ENXIO || errno == ENODEV) return UniqueFd();
    return fail_errno("opening image " + path);
  }
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno("opening image " + path);
  if (!S_ISBLK(st.st_mode)) return fail(ErrorCode::kInvalidArgument, "opening image " + path + ": not a block device");
  if (st.st_rdev != rdev) return UniqueFd();
  return fd;
}

// Makes a private node for `rdev` in a fresh temporary directory, opens it and
// removes node and directory again (the fd stays valid).
Result<UniqueFd> open_private_node(dev_t rdev, const std::string& what) {
  std::string dir = (std::filesystem::temp_directory_path() / "blkvault-image-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) return fail_errno(what + ": creating a private node directory");
  std::string node = dir + "/image";
  Result<UniqueFd> out = UniqueFd();
  if (::mknod(node.c_str(), S_IFBLK | 0600, rdev) != 0) {
    out = fail_errno(what + ": the node did not appear and mknod failed");
  } else {
    int raw = ::open(node.c_str(), O_RDONLY | O_CLOEXEC);
    out = raw >= 0 ? Result<UniqueFd>(UniqueFd(raw)) : Result<UniqueFd>(fail_errno(what + ": opening a private node"));
    ::unlink(node.c_str());
  }
  ::rmdir(dir.c_str());
  return out;
}

}  // namespace

Result<std::unique_ptr<ImageReader>> IoctlModule::open_image(DevId image) {
  const std::string path = options_.dev_dir + "/" + abi::kImageNamePrefix + std::to_string(image.minor);
  const dev_t rdev = makedev(image.major, image.minor);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.image_node_wait_ms);
  UniqueFd fd;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(fd, open_if_node_of(path, rdev));
    if (fd.valid()) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      BLKVAULT_TRY_ASSIGN(fd, open_private_node(rdev, "opening image " + path + " (" + to_string(image) + ")"));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  BLKVAULT_TRY_ASSIGN(uint64_t size, fd_size(fd.get(), "image " + path));
  (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::unique_ptr<ImageReader>(new FdImageReader(std::move(fd), path, size));
}

namespace {

// Extent flags that make an extent's physical address meaningless or unsafe to
// hand to the module, which writes those sectors directly.
constexpr uint32_t kUnmappableExtentFlags = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
                                            FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_ENCRYPTED |
                                            FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_INLINE |
                                            FIEMAP_EXTENT_DATA_TAIL | FIEMAP_EXTENT_SHARED;

void append_merged(std::vector<SectorRange>& ranges, SectorRange r) {
  if (!ranges.empty() && ranges.back().offset_sectors + ranges.back().count_sectors == r.offset_sectors) {
    ranges.back().count_sectors += r.count_sectors;
  } else {
    ranges.push_back(r);
  }
}

}  // namespace

Result<Module::StorageExtents> IoctlModule::map_storage_file(const std::string& path) {
  const std::string what = "mapping diff-storage file " + path;
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno(what);
  if (!S_ISREG(st.st_mode)) return fail(ErrorCode::kInvalidArgument, what + ": not a regular file");
  struct statfs sfs {};
  if (::fstatfs(fd.get(), &sfs) == 0 && sfs.f_type == BTRFS_SUPER_MAGIC) {
    return fail(ErrorCode::kUnsupported, what + ": btrfs extents are not device sectors; put diff storage on ext4 or xfs");
  }

  StorageExtents out;
  out.storage_dev = DevId{major(st.st_dev), minor(st.st_dev)};
  const uint64_t end = static_cast<uint64_t>(st.st_size) / kSectorSize * kSectorSize;
  constexpr uint32_t kBatch = 128;
  std::vector<uint8_t> buffer(sizeof(struct fiemap) + kBatch * sizeof(struct fiemap_extent));
  auto* fm = reinterpret_cast<struct fiemap*>(buffer.data());
  uint64_t covered = 0;  // bytes of [0, end) mapped so far, contiguously
  bool last = false;
  while (covered < end && !last) {
    std::fill(buffer.begin(), buffer.end(), 0);
    fm->fm_start = covered;
    fm->fm_length = end - covered;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = kBatch;
    if (::ioctl(fd.get(), FS_IOC_FIEMAP, fm) != 0) {
      int err = errno;
      if (err == EOPNOTSUPP || err == ENOTTY) {
        return fail(ErrorCode::kUnsupported, what + ": the filesystem does not support FIEMAP", err);
      }
      return fail_errno(what + ": FIEMAP", err);
    }
    if (fm->fm_mapped_extents == 0) break;
    for (uint32_t i = 0; i < fm->fm_mapped_extents && covered < end; ++i) {
      const struct fiemap_extent& e = fm->fm_extents[i];
      if (e.fe_logical > covered) {
        return fail(ErrorCode::kInvalidArgument,
                    what + ": hole at byte " + std::to_string(covered) + " (the file must be fully fallocated)");
      }
      if (e.fe_flags & kUnmappableExtentFlags) {
        char flags[16];
        std::snprintf(flags, sizeof flags, "0x%x", e.fe_flags);
        return fail(ErrorCode::kUnsupported, what + ": extent at byte " + std::to_string(e.fe_logical) +
                                                 " cannot be used as raw sectors (FIEMAP flags " + flags + ")");
      }
      if (e.fe_physical % kSectorSize != 0 || e.fe_length % kSectorSize != 0 || e.fe_logical % kSectorSize != 0) {
        return fail(ErrorCode::kUnsupported,
                    what + ": extent at byte " + std::to_string(e.fe_logical) + " is not 512-byte aligned");
      }
      // Skip what an earlier extent already covered, and stop at the file's end.
      const uint64_t skip = covered - e.fe_logical;
      if (skip >= e.fe_length) continue;
      const uint64_t length = std::min<uint64_t>(e.fe_length - skip, end - covered);
      append_merged(out.ranges, SectorRange{(e.fe_physical + skip) / kSectorSize, length / kSectorSize});
      covered += length;
      if (e.fe_flags & FIEMAP_EXTENT_LAST) last = true;
    }
  }
  if (covered < end) {
    return fail(ErrorCode::kInvalidArgument,
                what + ": hole at byte " + std::to_string(covered) + " (the file must be fully fallocated)");
  }
  return out;
}

Result<Module::StorageExtents> IoctlModule::map_storage_device(const std::string& path) {
  const std::string what = "difference storage device " + path;
  // O_EXCL on a block device is an exclusive open: it fails with EBUSY while the
  // device is mounted or claimed (a partition in use, a RAID or LVM member). The
  // module opens it itself at APPEND_STORAGE; this only keeps a user's mistake
  // from overwriting a filesystem.
  int fd = ::open(path.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == EBUSY) {
      return fail(ErrorCode::kBusy, what + ": in use (mounted, or claimed by another driver); give a spare partition "
                                           "or disk, or a directory",
                  err);
    }
    if (err == ENOENT) return fail(ErrorCode::kNotFound, what + ": no such device", err);
    return fail_errno(what, err);
  }
  UniqueFd owned(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno(what);
  if (!S_ISBLK(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument, what + ": not a block device (difference storage is a directory or a "
                                                    "whole block device)");
  }
  uint64_t bytes = 0;
  if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) return fail_errno(what + ": BLKGETSIZE64");
  StorageExtents out;
  out.storage_dev = DevId{major(st.st_rdev), minor(st.st_rdev)};
  if (bytes / kSectorSize > 0) out.ranges.push_back({0, bytes / kSectorSize});
  return out;
}

}  // namespace blkvault::kernel
