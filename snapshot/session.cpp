#include "snapshot/session.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/crash_point.h"
#include "common/file_io.h"

namespace blkvault::snapshot {
namespace {

constexpr const char* kRecordName = "snapshots.json";

std::string record_path(const std::string& state_dir) { return state_dir + "/" + kRecordName; }

// One snapshot blkvault owns. `id` is empty for the intent written just before
// SNAPSHOT_CREATE (so a kill between the create and the record cannot leak the
// snapshot): `devices` ("8:16", ...) then identify it.
struct Record {
  std::string id;
  std::vector<std::string> storage_files;
  std::vector<std::string> devices;
};

Result<std::vector<Record>> load_records(const std::string& state_dir) {
  auto text = read_file(record_path(state_dir));
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) return std::vector<Record>{};
    return fail(std::move(text).error());
  }
  try {
    std::vector<Record> out;
    const nlohmann::json doc = nlohmann::json::parse(*text);
    for (const auto& s : doc.at("snapshots")) {
      Record r{s.at("id").get<std::string>(), s.at("storage_files").get<std::vector<std::string>>(), {}};
      if (s.contains("devices")) r.devices = s.at("devices").get<std::vector<std::string>>();
      out.push_back(std::move(r));
    }
    return out;
  } catch (const std::exception& e) {
    return fail(ErrorCode::kCorrupt, fmt::format("reading {}: {}", record_path(state_dir), e.what()));
  }
}

Status save_records(const std::string& state_dir, const std::vector<Record>& records) {
  nlohmann::json j{{"snapshots", nlohmann::json::array()}};
  for (const auto& r : records) {
    j["snapshots"].push_back({{"id", r.id}, {"storage_files", r.storage_files}, {"devices", r.devices}});
  }
  return write_file_atomic(record_path(state_dir), j.dump(2) + "\n");
}

Status ensure_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(ErrorCode::kIo, fmt::format("creating {}: {}", dir, ec.message()));
  ::chmod(dir.c_str(), 0700);
  return {};
}

}  // namespace

Result<std::vector<std::string>> owned_snapshots(const std::string& state_dir) {
  BLKVAULT_TRY_ASSIGN(auto records, load_records(state_dir));
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.id);
  return ids;
}

Result<int> cleanup_orphans(kernel::Module& module, const std::string& state_dir, Logger& log) {
  BLKVAULT_TRY_ASSIGN(auto records, load_records(state_dir));
  if (records.empty()) return 0;
  BLKVAULT_TRY_ASSIGN(auto held, module.snapshots());
  int destroyed = 0;
  auto destroy = [&](const kernel::Uuid& id, const std::string& why) -> Status {
    Status st = module.destroy_snapshot(id);
    if (!st && st.error().code() != ErrorCode::kNotFound) {
      return fail(std::move(st).error().wrap("destroying orphaned snapshot " + kernel::to_string(id)));
    }
    ++destroyed;
    log.warning(fmt::format("destroyed snapshot {} {}", kernel::to_string(id), why));
    return {};
  };
  std::vector<std::string> recorded;
  for (const auto& r : records) recorded.push_back(r.id);
  for (const auto& r : records) {
    if (!r.id.empty()) {
      auto id = kernel::parse_uuid(r.id);
      if (id && std::find(held.begin(), held.end(), *id) != held.end()) {
        BLKVAULT_TRY(destroy(*id, "left behind by an interrupted blkvault run"));
      }
    } else {
      // A run killed between SNAPSHOT_CREATE and recording the id. Its snapshot
      // was never taken (the take comes after the record), so the module cannot
      // list its devices (COLLECT_IMAGES: ENODEV): an unrecorded snapshot that
      // is not taken is that one. One that is taken over exactly the intent's
      // devices is too (a device can be in one snapshot only). Another tool's
      // snapshot is only at risk in the milliseconds between its own create and
      // take (docs/RELIABILITY.md).
      std::vector<std::string> want = r.devices;
      std::sort(want.begin(), want.end());
      for (const auto& id : held) {
        if (std::find(recorded.begin(), recorded.end(), kernel::to_string(id)) != recorded.end()) continue;
        auto images = module.snapshot_images(id);
        bool ours = false;
        if (!images) {
          ours = images.error().sys_errno() == ENODEV;
        } else {
          std::vector<std::string> have;
          for (const auto& i : *images) have.push_back(kernel::to_string(i.original));
          std::sort(have.begin(), have.end());
          ours = !want.empty() && have == want;
        }
        if (ours) BLKVAULT_TRY(destroy(id, "of a blkvault run killed while creating it"));
      }
    }
    for (const auto& f : r.storage_files) ::unlink(f.c_str());
  }
  BLKVAULT_TRY(save_records(state_dir, {}));
  return destroyed;
}

Result<std::unique_ptr<Session>> Session::open(kernel::Module& module, const std::vector<std::string>& device_paths,
                                               SessionOptions options, Logger& log, const CancelToken* cancel) {
  if (device_paths.empty()) return fail(ErrorCode::kInvalidArgument, "no device to snapshot");
  BLKVAULT_TRY(ensure_dir(options.state_dir));
  if (options.diff_storage_device.empty()) BLKVAULT_TRY(ensure_dir(options.diff_storage_dir));
  BLKVAULT_TRY(cleanup_orphans(module, options.state_dir, log));
  std::unique_ptr<Session> s(new Session(module, std::move(options), log));
  if (Status st = s->start(device_paths, cancel); !st) {
    Status closed = s->close();
    if (!closed) log.error(closed.error().message());
    return fail(std::move(st).error());
  }
  return s;
}

Status Session::start(const std::vector<std::string>& device_paths, const CancelToken* cancel) {
  std::vector<kernel::DevId> ids;
  for (const auto& p : device_paths) {
    BLKVAULT_TRY_ASSIGN(kernel::DevId dev, module_.device_id(p));
    if (std::find(ids.begin(), ids.end(), dev) != ids.end()) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("device {} is given twice", p));
    }
    ids.push_back(dev);
    devices_.push_back(SessionDevice{p, dev, {}, {}, nullptr});
  }
  if (!options_.diff_storage_device.empty()) {
    // Mapped before the snapshot exists: a wrong device fails without creating one.
    BLKVAULT_TRY_ASSIGN(auto whole, module_.map_storage_device(options_.diff_storage_device));
    if (std::find(ids.begin(), ids.end(), whole.storage_dev) != ids.end()) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("difference storage device {} is being backed up; give another device or a directory",
                              options_.diff_storage_device));
    }
    if (whole.ranges.empty()) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("difference storage device {} is empty", options_.diff_storage_device));
    }
    storage_device_ = std::move(whole);
  }
  struct stat st {};
  if (storage_device_) {
    // Checked above.
  } else if (::stat(options_.diff_storage_dir.c_str(), &st) == 0) {
    for (const auto& d : devices_) {
      if (st.st_dev == makedev(d.dev.major, d.dev.minor)) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("difference storage directory {} is on {}, a device being backed up; choose another "
                                "filesystem with --diff-storage",
                                options_.diff_storage_dir, d.path));
      }
    }
  }
  for (auto dev : ids) devices_text_.push_back(kernel::to_string(dev));
  BLKVAULT_TRY(write_record());  // the intent (no id yet): a kill during the create cannot leak it
  crash_point("before SNAPSHOT_CREATE");
  auto created = module_.create_snapshot(ids);
  if (!created) {
    (void)drop_record();
    return fail(std::move(created).error());
  }
  id_ = *created;
  created_ = true;
  crash_point("after SNAPSHOT_CREATE");
  BLKVAULT_TRY(write_record());

  // The module queues a low_free_space event at create; answer it before take.
  uint64_t requested_bytes = 0;
  BLKVAULT_TRY_ASSIGN(auto first, module_.wait_event(id_, options_.event_poll_ms));
  if (first && first->code == kernel::Event::Code::kLowFreeSpace) {
    requested_bytes = first->requested_sectors * kernel::kSectorSize;
  }
  BLKVAULT_TRY(add_storage(std::min(options_.limit_bytes, std::max(options_.initial_bytes, requested_bytes))));
  if (cancel) BLKVAULT_TRY(cancel->check());

  events_ = std::thread([this] { event_loop(); });
  crash_point("before SNAPSHOT_TAKE");
  BLKVAULT_TRY(module_.take_snapshot(id_));
  crash_point("after SNAPSHOT_TAKE");
  BLKVAULT_TRY_ASSIGN(auto images, module_.snapshot_images(id_));
  BLKVAULT_TRY_ASSIGN(auto infos, module_.tracked_devices());
  for (auto& d : devices_) {
    auto img = std::find_if(images.begin(), images.end(), [&](const kernel::ImageInfo& i) { return i.original == d.dev; });
    if (img == images.end() || img->image == kernel::DevId{}) {
      return fail(ErrorCode::kModule, fmt::format("the module created no snapshot image for {}", d.path));
    }
    d.image = img->image;
    auto info = std::find_if(infos.begin(), infos.end(), [&](const kernel::CbtInfo& i) { return i.dev == d.dev; });
    if (info == infos.end()) return fail(ErrorCode::kModule, fmt::format("{} is not tracked after the take", d.path));
    d.cbt = *info;
    BLKVAULT_TRY_ASSIGN(d.reader, module_.open_image(d.image));
  }
  return {};
}

Status Session::add_storage(uint64_t bytes) {
  bytes = (bytes + (1 << 20) - 1) / (1 << 20) * (1 << 20);
  if (storage_device_) return add_device_storage(bytes);
  std::string path;
  {
    std::lock_guard lock(mutex_);
    path = fmt::format("{}/blkvault-diff-{}-{}", options_.diff_storage_dir, kernel::to_string(id_), storage_files_.size());
    storage_files_.push_back(path);
  }
  BLKVAULT_TRY(write_record());  // recorded before it exists, so a crash cannot leak it
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600));
  if (int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)); rc != 0) {
    return fail_errno(fmt::format("preallocating {} bytes of difference storage in {}", bytes, path), rc);
  }
  BLKVAULT_TRY(fsync_fd(fd.get(), path));
  BLKVAULT_TRY(fd.close(path));
  BLKVAULT_TRY_ASSIGN(auto extents, module_.map_storage_file(path));
  BLKVAULT_TRY(module_.append_storage(id_, extents.storage_dev, extents.ranges));
  storage_bytes_ += bytes;
  return {};
}

Status Session::add_device_storage(uint64_t bytes) {
  const kernel::SectorRange whole = storage_device_->ranges.front();
  const uint64_t left = whole.count_sectors - storage_device_used_sectors_;
  if (left == 0) {
    return fail(ErrorCode::kNoSpace, fmt::format("difference storage device {} is full ({} bytes handed to the snapshot)",
                                                 options_.diff_storage_device, storage_bytes_.load()));
  }
  const uint64_t sectors = std::min(left, bytes / kernel::kSectorSize);
  const kernel::SectorRange slice{whole.offset_sectors + storage_device_used_sectors_, sectors};
  BLKVAULT_TRY(module_.append_storage(id_, storage_device_->storage_dev, std::span(&slice, 1)));
  storage_device_used_sectors_ += sectors;
  storage_bytes_ += sectors * kernel::kSectorSize;
  return {};
}

// Replaces this session's record (or its intent) in the state dir.
Status Session::write_record() {
  BLKVAULT_TRY_ASSIGN(auto records, load_records(options_.state_dir));
  const std::string id = created_ ? kernel::to_string(id_) : std::string();
  std::erase_if(records, [&](const Record& r) { return r.id == id || (r.id.empty() && r.devices == devices_text_); });
  Record mine{id, {}, devices_text_};
  {
    std::lock_guard lock(mutex_);
    mine.storage_files = storage_files_;
  }
  records.push_back(std::move(mine));
  return save_records(options_.state_dir, records);
}

Status Session::drop_record() {
  BLKVAULT_TRY_ASSIGN(auto records, load_records(options_.state_dir));
  const std::string id = created_ ? kernel::to_string(id_) : std::string();
  std::erase_if(records, [&](const Record& r) { return r.id == id && (!r.id.empty() || r.devices == devices_text_); });
  return save_records(options_.state_dir, records);
}

void Session::event_loop() {
  while (!stop_.load()) {
    auto ev = module_.wait_event(id_, options_.event_poll_ms);
    if (!ev) {
      if (ev.error().code() == ErrorCode::kNotFound) return;  // snapshot gone
      log_.warning(ev.error().message());
      continue;
    }
    if (!*ev) continue;
    const kernel::Event& e = **ev;
    if (e.code == kernel::Event::Code::kLowFreeSpace) {
      uint64_t want = e.requested_sectors * kernel::kSectorSize;
      if (storage_bytes_.load() + want > options_.limit_bytes) {
        log_.warning(fmt::format("difference storage would exceed its limit of {} bytes; not growing it (the snapshot "
                                 "may overflow if writes continue)",
                                 options_.limit_bytes));
        continue;
      }
      if (Status st = add_storage(want); !st) log_.error(st.error().message());
    } else {
      std::lock_guard lock(mutex_);
      std::string name = kernel::to_string(e.corrupted_device);
      for (const auto& d : devices_) {
        if (d.dev == e.corrupted_device) name = d.path;
      }
      failures_.emplace_back(e.corrupted_device,
                             Error::from_errno(fmt::format("the snapshot of {} is corrupted (difference storage "
                                                           "overflow or I/O error); its image can no longer be read",
                                                           name),
                                               e.error_code));
    }
  }
}

std::optional<Error> Session::device_failure(kernel::DevId dev) const {
  std::lock_guard lock(mutex_);
  for (const auto& [d, e] : failures_) {
    if (d == dev) return e;
  }
  return std::nullopt;
}

Result<std::vector<uint8_t>> Session::read_cbt_map(const SessionDevice& device) {
  std::vector<uint8_t> map(device.cbt.block_count);
  BLKVAULT_TRY(module_.read_cbt_map(device.dev, 0, map));
  return map;
}

Status Session::close() {
  if (closed_) return {};
  closed_ = true;
  stop_ = true;
  if (events_.joinable()) events_.join();
  for (auto& d : devices_) d.reader.reset();
  Status result;
  if (created_) {
    crash_point("before SNAPSHOT_DESTROY");
    Status st = module_.destroy_snapshot(id_);
    if (!st && st.error().code() != ErrorCode::kNotFound) {
      // Keep the record: the next run's cleanup_orphans retries.
      return fail(std::move(st).error().wrap("destroying snapshot " + kernel::to_string(id_)));
    }
  }
  std::vector<std::string> files;
  {
    std::lock_guard lock(mutex_);
    files = storage_files_;
  }
  for (const auto& f : files) {
    if (::unlink(f.c_str()) != 0 && errno != ENOENT && result) result = fail_errno("removing " + f);
  }
  if (created_) {
    if (Status st = drop_record(); !st && result) result = st;
  }
  return result;
}

Session::~Session() {
  if (Status st = close(); !st) log_.error(st.error().message());
}

}  // namespace blkvault::snapshot
