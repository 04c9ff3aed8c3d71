// IoctlModule against the REAL veeamblksnap 6.3 module, in the lab VM
// (../shared/blksnap-lab; scripts/lab-ioctl-test.sh builds and runs it there).
//
// DESTRUCTIVE: it writes to the device it snapshots and overwrites the storage
// device. It therefore runs only when BLKVAULT_LAB_DEVICE (the device to
// snapshot, /dev/vda in the VM), BLKVAULT_LAB_STORAGE (a spare block device for
// diff storage, /dev/vdb) and BLKVAULT_LAB_SCRATCH (a directory on ext4 for a
// FIEMAP-mapped storage file, /scratch) are all set; everywhere else it skips.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/file_io.h"
#include "kernel/abi.h"
#include "kernel/ioctl_module.h"

namespace blkvault::kernel {
namespace {

struct LabEnv {
  std::string device, storage, scratch;
};

std::optional<LabEnv> lab_env() {
  const char* d = std::getenv("BLKVAULT_LAB_DEVICE");
  const char* s = std::getenv("BLKVAULT_LAB_STORAGE");
  const char* c = std::getenv("BLKVAULT_LAB_SCRATCH");
  if (!d || !s || !c) return std::nullopt;
  return LabEnv{d, s, c};
}

#define ASSERT_OK(expr)                                                    \
  do {                                                                     \
    auto&& _r = (expr);                                                    \
    ASSERT_TRUE(_r) << #expr << ": " << _r.error().message();              \
  } while (0)

std::vector<uint8_t> read_device(const std::string& path, uint64_t offset, size_t size) {
  std::vector<uint8_t> out(size);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd) << path << ": " << std::strerror(errno);
  if (fd) {
    EXPECT_TRUE(pread_full(fd.get(), out, offset, path));
  }
  return out;
}

// The errno of a failed call, 0 on success.
template <class R>
int err_of(const R& r) {
  return r ? 0 : r.error().sys_errno();
}

const CbtInfo* find_info(const std::vector<CbtInfo>& infos, DevId dev) {
  auto it = std::find_if(infos.begin(), infos.end(), [&](const CbtInfo& i) { return i.dev == dev; });
  return it == infos.end() ? nullptr : &*it;
}

TEST(RealModule, FullLifecycleMatchesTheDocumentedSemantics) {
  auto env = lab_env();
  if (!env) GTEST_SKIP() << "not in the blksnap lab VM (BLKVAULT_LAB_DEVICE/STORAGE/SCRATCH unset)";

  // Open, version check, description.
  auto opened = open_module(abi::kControlPath);
  ASSERT_OK(opened);
  Module& m = **opened;
  EXPECT_EQ(m.description(), "veeamblksnap 6.3.0.73 (/dev/veeamblksnap)");
  auto snaps = m.snapshots();
  ASSERT_OK(snaps);
  ASSERT_TRUE(snaps->empty()) << "a fresh VM has no snapshot";

  auto dev_r = m.device_id(env->device);
  ASSERT_OK(dev_r);
  const DevId dev = *dev_r;
  auto storage_r = m.device_id(env->storage);
  ASSERT_OK(storage_r);
  EXPECT_EQ(m.device_path(dev).value(), env->device);

  // Untracked device: READ_CBT_MAP is ENODATA, TRACKER_REMOVE is ENODATA.
  std::vector<uint8_t> one(1);
  auto untracked = m.read_cbt_map(dev, 0, one);
  ASSERT_FALSE(untracked);
  EXPECT_EQ(untracked.error().sys_errno(), ENODATA);
  EXPECT_EQ(untracked.error().code(), ErrorCode::kNotFound);

  auto untracked_mark = m.mark_dirty(dev, std::vector<SectorRange>{{0, 8}});
  ASSERT_FALSE(untracked_mark);
  EXPECT_EQ(untracked_mark.error().sys_errno(), ENODEV);
  EXPECT_EQ(untracked_mark.error().message(),
            "TRACKER_MARK_DIRTY_BLOCKS of device " + to_string(dev) + ": No such device");

  // Unknown snapshot ids: ENODEV for destroy, ESRCH for the others (SEMANTICS.md §6.3).
  const Uuid unknown{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  EXPECT_EQ(err_of(m.take_snapshot(unknown)), ESRCH);
  EXPECT_EQ(err_of(m.destroy_snapshot(unknown)), ENODEV);
  EXPECT_EQ(err_of(m.append_storage(unknown, *storage_r, std::vector<SectorRange>{{0, 8}})), ESRCH);
  EXPECT_EQ(err_of(m.snapshot_images(unknown)), ESRCH);
  auto wait_unknown = m.wait_event(unknown, 0);
  ASSERT_FALSE(wait_unknown);
  EXPECT_EQ(wait_unknown.error().sys_errno(), ESRCH);
  EXPECT_EQ(wait_unknown.error().message(), "SNAPSHOT_WAIT_EVENT of " + snapshot_subject(unknown) + ": No such process");
  auto twice_listed = m.create_snapshot(std::vector<DevId>{dev, dev});
  ASSERT_FALSE(twice_listed);
  EXPECT_EQ(twice_listed.error().sys_errno(), EINVAL);

  // ---- snapshot 1: storage on a raw device ----
  std::vector<DevId> devices{dev};
  auto id_r = m.create_snapshot(devices);
  ASSERT_OK(id_r);
  const Uuid id = *id_r;
  EXPECT_EQ(m.snapshots().value(), std::vector<Uuid>{id});
  auto busy_create = m.create_snapshot(devices);
  ASSERT_FALSE(busy_create);
  EXPECT_EQ(busy_create.error().sys_errno(), EALREADY);
  EXPECT_EQ(busy_create.error().code(), ErrorCode::kBusy);

  // A new tracker before its first take: snap 0 (as the simulation reports it).
  auto created_infos = m.tracked_devices();
  ASSERT_OK(created_infos);
  const CbtInfo* created = find_info(*created_infos, dev);
  ASSERT_NE(created, nullptr);
  EXPECT_EQ(created->snap_number, 0);
  // Not taken is checked before the offset: EPERM, not EINVAL, at the map's end
  // (what tests/kernel/decoding_transport_support.cpp plays).
  auto end_not_taken = m.read_cbt_map(dev, created->block_count, one);
  ASSERT_FALSE(end_not_taken);
  EXPECT_EQ(end_not_taken.error().sys_errno(), EPERM);

  auto ev = m.wait_event(id, 100);
  ASSERT_OK(ev);
  ASSERT_TRUE(ev->has_value()) << "CREATE queues a low free space event";
  EXPECT_EQ((*ev)->code, Event::Code::kLowFreeSpace);
  EXPECT_EQ((*ev)->requested_sectors, 2097152u);
  EXPECT_GT((*ev)->time_label_ns, 0);
  auto none = m.wait_event(id, 0);
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value()) << "ENOENT on an empty queue";

  auto images_early = m.snapshot_images(id);
  ASSERT_FALSE(images_early);
  EXPECT_EQ(images_early.error().sys_errno(), ENODEV) << "COLLECT_IMAGES before TAKE";

  // Tracked but not taken: EPERM.
  auto not_taken = m.read_cbt_map(dev, 0, one);
  ASSERT_FALSE(not_taken);
  EXPECT_EQ(not_taken.error().sys_errno(), EPERM);

  std::vector<SectorRange> raw_storage{{0, 2097152}};
  ASSERT_OK(m.append_storage(id, *storage_r, raw_storage));
  ASSERT_OK(m.take_snapshot(id));
  auto again = m.take_snapshot(id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().sys_errno(), EALREADY);
  EXPECT_EQ(again.error().message(), "SNAPSHOT_TAKE of snapshot " + to_string(id) + ": Operation already in progress");

  auto infos = m.tracked_devices();
  ASSERT_OK(infos);
  const CbtInfo* info = find_info(*infos, dev);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->snap_number, 1);
  EXPECT_EQ(info->block_size_bytes, 65536u);
  const uint64_t capacity = info->capacity_bytes;
  EXPECT_EQ(info->block_count, (capacity + 65535) / 65536);
  const Uuid generation = info->generation_id;
  const uint32_t blocks = info->block_count;

  std::vector<uint8_t> map(blocks, 0xff);
  ASSERT_OK(m.read_cbt_map(dev, 0, map));
  EXPECT_EQ(std::count(map.begin(), map.end(), 0), static_cast<long>(blocks)) << "first take: all zero";
  std::vector<uint8_t> end_past(1);
  auto past = m.read_cbt_map(dev, blocks, end_past);
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().sys_errno(), EINVAL);

  auto images = m.snapshot_images(id);
  ASSERT_OK(images);
  ASSERT_EQ(images->size(), 1u);
  EXPECT_EQ((*images)[0].original, dev);
  auto reader_r = m.open_image((*images)[0].image);
  ASSERT_OK(reader_r);
  ImageReader& reader = **reader_r;
  EXPECT_EQ(reader.path(), "/dev/veeamblksnapimg" + std::to_string((*images)[0].image.minor));
  EXPECT_EQ(reader.size_bytes(), capacity);
  const std::vector<uint8_t> before = read_device(env->device, 0, 1 << 20);
  std::vector<uint8_t> image_data(1 << 20);
  ASSERT_OK(reader.read_at(0, image_data));
  EXPECT_TRUE(image_data == before) << "image == original before any write";

  // Overwrite block 0 of the original: the image keeps the old data (copy-on-write).
  {
    UniqueFd fd(::open(env->device.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd);
    std::vector<uint8_t> pattern(65536, 0x5a);
    ASSERT_OK(pwrite_full(fd.get(), pattern, 0, env->device));
    ASSERT_OK(fsync_fd(fd.get(), env->device));
  }
  EXPECT_EQ(read_device(env->device, 0, 1)[0], 0x5a);
  ASSERT_OK(reader.read_at(0, image_data));
  EXPECT_TRUE(image_data == before) << "image unchanged after the original was written";

  // mark_dirty raises the read map to the last take's number at once.
  std::vector<SectorRange> dirty{{8 * 128, 8}};  // block 8
  ASSERT_OK(m.mark_dirty(dev, dirty));
  ASSERT_OK(m.read_cbt_map(dev, 0, map));
  EXPECT_EQ(map[0], 0) << "the read map is frozen at take";
  EXPECT_EQ(map[8], 1);
  std::vector<uint8_t> tail(std::min<uint32_t>(10, blocks));
  ASSERT_OK(m.read_cbt_map(dev, blocks - tail.size(), tail));
  // Past the end: the module returns the bytes it has, IoctlModule reports it.
  std::vector<uint8_t> over(5);
  auto short_read = m.read_cbt_map(dev, blocks - 3, over);
  ASSERT_FALSE(short_read);
  EXPECT_EQ(short_read.error().message(), "TRACKER_READ_CBT_MAP of device " + to_string(dev) + " at block " +
                                              std::to_string(blocks - 3) +
                                              ": returned 3 bytes, expected 5 (did the map shrink?)");
  // Ranges before the bad one stay marked; the bad one is EINVAL.
  auto mark_past = m.mark_dirty(dev, std::vector<SectorRange>{{9 * 128, 1}, {uint64_t{blocks} * 128, 1}});
  ASSERT_FALSE(mark_past);
  EXPECT_EQ(mark_past.error().sys_errno(), EINVAL);
  ASSERT_OK(m.read_cbt_map(dev, 0, map));
  EXPECT_EQ(map[9], 1) << "the range before the bad one was marked";

  auto busy = m.remove_tracker(dev);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().sys_errno(), EBUSY);
  EXPECT_EQ(busy.error().code(), ErrorCode::kBusy);

  reader_r->reset();
  ASSERT_OK(m.destroy_snapshot(id));
  auto twice = m.destroy_snapshot(id);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().sys_errno(), ENODEV);
  EXPECT_EQ(twice.error().code(), ErrorCode::kNotFound);
  auto gone = m.wait_event(id, 0);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().sys_errno(), ESRCH);
  EXPECT_TRUE(m.snapshots().value().empty());

  // ---- snapshot 2: storage in a fallocated, FIEMAP-mapped file ----
  const std::string file = env->scratch + "/diff_storage#0";
  {
    UniqueFd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::fallocate(fd.get(), 0, 0, 256 << 20), 0) << std::strerror(errno);
    ASSERT_OK(fsync_fd(fd.get(), file));
  }
  auto extents = m.map_storage_file(file);
  ASSERT_OK(extents);
  uint64_t mapped = 0;
  for (const SectorRange& r : extents->ranges) mapped += r.count_sectors;
  EXPECT_EQ(mapped, (256u << 20) / 512);

  auto id2_r = m.create_snapshot(devices);
  ASSERT_OK(id2_r);
  const Uuid id2 = *id2_r;
  ASSERT_OK(m.append_storage(id2, extents->storage_dev, extents->ranges));
  ASSERT_OK(m.take_snapshot(id2));
  infos = m.tracked_devices();
  ASSERT_OK(infos);
  info = find_info(*infos, dev);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->snap_number, 2);
  EXPECT_EQ(info->generation_id, generation) << "same tracker, same generation";
  ASSERT_OK(m.read_cbt_map(dev, 0, map));
  EXPECT_EQ(map[0], 2) << "written between take 1 and take 2";
  EXPECT_EQ(map[8], 2) << "marked dirty between take 1 and take 2";
  EXPECT_EQ(map[9], 2) << "marked by the failed mark_dirty between take 1 and take 2";
  EXPECT_EQ(std::count(map.begin(), map.end(), 0), static_cast<long>(blocks) - 3);

  auto images2 = m.snapshot_images(id2);
  ASSERT_OK(images2);
  ASSERT_EQ(images2->size(), 1u);
  auto reader2 = m.open_image((*images2)[0].image);
  ASSERT_OK(reader2);
  std::vector<uint8_t> first(512);
  ASSERT_OK((*reader2)->read_at(0, first));
  EXPECT_EQ(first[0], 0x5a) << "the second snapshot sees the write";
  // Copy-on-write into the file-backed storage.
  const std::vector<uint8_t> old4 = read_device(env->device, 4 << 20, 1 << 20);
  {
    UniqueFd fd(::open(env->device.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd);
    std::vector<uint8_t> pattern(1 << 20, 0xa5);
    ASSERT_OK(pwrite_full(fd.get(), pattern, 4 << 20, env->device));
    ASSERT_OK(fsync_fd(fd.get(), env->device));
  }
  std::vector<uint8_t> cow(1 << 20);
  ASSERT_OK((*reader2)->read_at(4 << 20, cow));
  EXPECT_TRUE(cow == old4) << "image keeps the pre-write data";
  EXPECT_EQ(read_device(env->device, 4 << 20, 1)[0], 0xa5);
  reader2->reset();
  ASSERT_OK(m.destroy_snapshot(id2));
  ::unlink(file.c_str());

  // Tracking survives destroy; removal ends it.
  ASSERT_OK(m.remove_tracker(dev));
  auto removed = m.remove_tracker(dev);
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().sys_errno(), ENODATA);
  EXPECT_EQ(removed.error().message(), "TRACKER_REMOVE of device " + to_string(dev) + ": No data available");
  infos = m.tracked_devices();
  ASSERT_OK(infos);
  EXPECT_EQ(find_info(*infos, dev), nullptr);
}

}  // namespace
}  // namespace blkvault::kernel
