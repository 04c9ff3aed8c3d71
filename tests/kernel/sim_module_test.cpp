// The simulated module's ioctl semantics: every errno of SEMANTICS.md §6/§7,
// tracker lifecycle, CBT numbering, events, persistence across instances.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "kernel/sim_device.h"
#include "sim_fixture.h"

namespace blkvault::kernel {
namespace {

constexpr uint64_t kDev = 4 << 20;  // 64 blocks of 64 KiB

TEST(SimGeometry, FollowsTheModulesBlockSizeRule) {
  auto g = sim::derive_geometry(uint64_t{1} << 30);
  EXPECT_EQ(g.block_size, 65536u);
  EXPECT_EQ(g.block_count, 16384u);
  g = sim::derive_geometry(uint64_t{128} << 30);  // exactly 2,097,152 blocks of 64 KiB
  EXPECT_EQ(g.block_size, 65536u);
  EXPECT_EQ(g.block_count, 2097152u);
  g = sim::derive_geometry((uint64_t{128} << 30) + 512);
  EXPECT_EQ(g.block_size, 131072u);
  EXPECT_EQ(g.block_count, 1048577u);
  g = sim::derive_geometry(uint64_t{1} << 40);
  EXPECT_EQ(g.block_size, 524288u);
  g = sim::derive_geometry(uint64_t{1} << 50);  // past 128 TiB: stays at 64 MiB, count exceeds 2M
  EXPECT_EQ(g.block_size, 64u << 20);
  EXPECT_EQ(g.block_count, 16777216u);
  g = sim::derive_geometry(100000);  // partial last block, whole sectors only
  EXPECT_EQ(g.capacity_bytes, 99840u);
  EXPECT_EQ(g.block_count, 2u);
  EXPECT_EQ(sim::derive_chunk_size(uint64_t{1} << 40), 256u << 10);
}

TEST_F(SimKernelTest, ReportsVersion6_3_0_73AndDescribesItself) {
  auto v = sim_->version();
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(to_string(*v), "6.3.0.73");
  EXPECT_EQ(sim_->description(), "simulated veeamblksnap 6.3.0.73 (sim:" + state_dir() + ")");
  struct stat st {};
  ASSERT_EQ(::stat(state_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(SimKernelTest, SamePathGetsTheSameSyntheticDevIdAcrossInstances) {
  DevId a = dev(make_device("a.img", kDev));
  DevId b = dev(make_device("b.img", kDev));
  EXPECT_EQ(a, (DevId{240, 0}));
  EXPECT_EQ(b, (DevId{240, 1}));
  EXPECT_EQ(dev(root_ + "/./a.img"), a);
  sim_ = open_sim();
  EXPECT_EQ(dev(path("b.img")), b);
  EXPECT_EQ(sim_->device_path(b).value_or(""), std::filesystem::canonical(path("b.img")).string());
  auto missing = sim_->device_id(path("nope.img"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  auto dir = sim_->device_id(root_);
  ASSERT_FALSE(dir);
  EXPECT_EQ(dir.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(SimKernelTest, TrackersAreCreatedOnlyByCreateAndSurviveDestroy) {
  DevId d = dev(make_device("a.img", kDev));
  EXPECT_TRUE(sim_->tracked_devices()->empty());
  auto id = sim_->create_snapshot(std::vector<DevId>{d});
  ASSERT_TRUE(id.has_value());
  CbtInfo i = info(d);
  EXPECT_EQ(i.block_size_bytes, 65536u);
  EXPECT_EQ(i.block_count, 64u);
  EXPECT_EQ(i.capacity_bytes, kDev);
  EXPECT_EQ(i.snap_number, 0);
  EXPECT_NE(i.generation_id, Uuid{});
  ASSERT_TRUE(sim_->destroy_snapshot(*id).has_value());
  EXPECT_EQ(info(d).generation_id, i.generation_id);
  // Reused by the next snapshot: the history continues.
  Uuid again = take_new({d});
  EXPECT_EQ(info(d).generation_id, i.generation_id);
  EXPECT_EQ(info(d).snap_number, 1);
  EXPECT_TRUE(sim_->destroy_snapshot(again).has_value());
}

TEST_F(SimKernelTest, SimulatedWritesStayWithinTheDevicesWholeSectors) {
  std::string p = make_device("odd.img", 65536 + 100);
  std::vector<uint8_t> two(2, 1);
  Status past = sim_->write(p, 65536, two);
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(past.error().message(), "writing 2 bytes at offset 65536 of " +
                                        std::filesystem::canonical(p).string() +
                                        ": beyond the end of the device (65536 bytes)");
  EXPECT_TRUE(sim_->write(p, 65534, two).has_value());
  EXPECT_TRUE(sim_->write(p, 65536, {}).has_value());
}

TEST_F(SimKernelTest, DiffStorageFileMustBeFullyAllocated) {
  std::string sparse = path("sparse-storage");
  ASSERT_EQ(::close(::open(sparse.c_str(), O_RDWR | O_CREAT, 0600)), 0);
  ASSERT_EQ(::truncate(sparse.c_str(), 1 << 20), 0);
  auto r = sim_->map_storage_file(sparse);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "mapping diff-storage file " + sparse +
                                     ": only 0 of 1048576 bytes are allocated (the file must be fully fallocated)");
  EXPECT_EQ(sim_->map_storage_file(root_).error().message(), "mapping diff-storage file " + root_ + ": not a regular file");
  auto ok = sim_->map_storage_file(make_storage("full", 1 << 20));
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->storage_dev.major, 240u);
  ASSERT_EQ(ok->ranges.size(), 1u);
  EXPECT_EQ(ok->ranges[0].offset_sectors, 0u);
  EXPECT_EQ(ok->ranges[0].count_sectors, 2048u);
}

TEST_F(SimKernelTest, TrackedDeviceThatDisappearedIsListedWithOnlyItsDevId) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d});
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  ASSERT_EQ(::unlink(p.c_str()), 0);
  auto all = sim_->tracked_devices();
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].dev, d);
  EXPECT_EQ((*all)[0].block_count, 0u);
  EXPECT_EQ((*all)[0].generation_id, Uuid{});
}

TEST_F(SimKernelTest, ReadCbtMapErrnos) {
  DevId d = dev(make_device("a.img", kDev));
  std::vector<uint8_t> byte(1);
  EXPECT_EQ(err_of(sim_->read_cbt_map(d, 0, byte)), ENODATA);
  auto id = sim_->create_snapshot(std::vector<DevId>{d});
  ASSERT_TRUE(id.has_value());
  std::vector<uint8_t> one(1);
  Status not_taken = sim_->read_cbt_map(d, 0, one);
  EXPECT_EQ(err_of(not_taken), EPERM);
  EXPECT_EQ(not_taken.error().message(), "TRACKER_READ_CBT_MAP of device 240:0: Operation not permitted");
  ASSERT_TRUE(sim_->destroy_snapshot(*id).has_value());
  Uuid taken = take_new({d});
  EXPECT_EQ(err_of(sim_->read_cbt_map(d, 64, one)), EINVAL);
  EXPECT_EQ(err_of(sim_->read_cbt_map(d, 63, one)), 0);
  std::vector<uint8_t> two(2);
  Status past = sim_->read_cbt_map(d, 63, two);
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().code(), ErrorCode::kModule);
  ASSERT_TRUE(sim_->destroy_snapshot(taken).has_value());
  EXPECT_EQ(err_of(sim_->read_cbt_map(d, 0, one)), EPERM);
}

TEST_F(SimKernelTest, CreateErrnos) {
  DevId a = dev(make_device("a.img", kDev));
  DevId b = dev(make_device("b.img", kDev));
  auto dup = sim_->create_snapshot(std::vector<DevId>{a, a});
  EXPECT_EQ(err_of(dup), EINVAL);
  EXPECT_TRUE(sim_->tracked_devices()->empty());
  auto first = sim_->create_snapshot(std::vector<DevId>{a});
  ASSERT_TRUE(first.has_value());
  auto busy = sim_->create_snapshot(std::vector<DevId>{b, a});
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().sys_errno(), EALREADY);
  EXPECT_EQ(busy.error().code(), ErrorCode::kBusy);
  // b's tracker, created before the failure, stays attached.
  EXPECT_EQ(sim_->tracked_devices()->size(), 2u);
  // A device number nothing answers to: ENXIO, as the real module's open says (lab).
  EXPECT_EQ(err_of(sim_->create_snapshot(std::vector<DevId>{DevId{240, 99}})), ENXIO);
  EXPECT_EQ(*sim_->snapshots(), std::vector<Uuid>{*first});
}

TEST_F(SimKernelTest, UnknownSnapshotErrnosDifferByOperation) {
  Uuid ghost{};
  ghost[0] = 7;
  EXPECT_EQ(err_of(sim_->destroy_snapshot(ghost)), ENODEV);
  EXPECT_EQ(sim_->destroy_snapshot(ghost).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(err_of(sim_->take_snapshot(ghost)), ESRCH);
  EXPECT_EQ(err_of(sim_->append_storage(ghost, DevId{240, 0}, {})), ESRCH);
  EXPECT_EQ(err_of(sim_->wait_event(ghost, 0)), ESRCH);
  EXPECT_EQ(err_of(sim_->snapshot_images(ghost)), ESRCH);
}

TEST_F(SimKernelTest, TakeWithoutStorageFailsEfaultAndDestroysTheSnapshot) {
  DevId d = dev(make_device("a.img", kDev));
  auto id = sim_->create_snapshot(std::vector<DevId>{d});
  ASSERT_TRUE(id.has_value());
  Status st = sim_->take_snapshot(*id);
  EXPECT_EQ(err_of(st), EFAULT);
  EXPECT_EQ(st.error().message(), "SNAPSHOT_TAKE of snapshot " + to_string(*id) + ": Bad address");
  EXPECT_EQ(err_of(sim_->take_snapshot(*id)), ESRCH);
  EXPECT_EQ(err_of(sim_->destroy_snapshot(*id)), ENODEV);
  EXPECT_TRUE(sim_->snapshots()->empty());
  // The tracker stays and is free for the next snapshot.
  EXPECT_EQ(sim_->tracked_devices()->size(), 1u);
  Uuid next = take_new({d});
  EXPECT_EQ(err_of(sim_->take_snapshot(next)), EALREADY);
}

TEST_F(SimKernelTest, EmptySnapshotIsCreatedButCannotBeTaken) {
  auto id = sim_->create_snapshot(std::vector<DevId>{});
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(err_of(sim_->take_snapshot(*id)), ENODEV);
}

TEST_F(SimKernelTest, CollectImagesNeedsATakenSnapshotAndGivesLowestFreeMinors) {
  DevId a = dev(make_device("a.img", kDev));
  DevId b = dev(make_device("b.img", kDev / 2));
  auto created = sim_->create_snapshot(std::vector<DevId>{b, a});
  ASSERT_TRUE(created.has_value());
  EXPECT_EQ(err_of(sim_->snapshot_images(*created)), ENODEV);
  ASSERT_TRUE(sim_->destroy_snapshot(*created).has_value());
  Uuid id = take_new({b, a});
  auto images = sim_->snapshot_images(id);
  ASSERT_TRUE(images.has_value());
  ASSERT_EQ(images->size(), 2u);
  EXPECT_EQ((*images)[0].original, b);
  EXPECT_EQ((*images)[0].image, (DevId{241, 0}));
  EXPECT_EQ((*images)[1].original, a);
  EXPECT_EQ((*images)[1].image, (DevId{241, 1}));
  auto reader = sim_->open_image((*images)[0].image);
  ASSERT_TRUE(reader.has_value());
  EXPECT_EQ((*reader)->size_bytes(), kDev / 2);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  std::vector<uint8_t> buf(512);
  Status gone = (*reader)->read_at(0, buf);
  EXPECT_EQ(gone.error().code(), ErrorCode::kIo);
  EXPECT_EQ(err_of(sim_->open_image(DevId{241, 0})), ENOENT);
  Uuid again = take_new({a});
  EXPECT_EQ(image_of(again, a), (DevId{241, 0}));
}

TEST_F(SimKernelTest, MarkDirtyRaisesBothMapsAlsoThroughTheImage) {
  DevId d = dev(make_device("a.img", kDev));
  SectorRange r{128 * 3, 1};  // block 3
  EXPECT_EQ(err_of(sim_->mark_dirty(d, std::vector<SectorRange>{r})), ENODEV);
  Uuid first = take_new({d});
  ASSERT_TRUE(sim_->destroy_snapshot(first).has_value());
  Uuid second = take_new({d});  // previous 2, active 3
  ASSERT_TRUE(sim_->mark_dirty(d, std::vector<SectorRange>{r}).has_value());
  std::vector<uint8_t> map = cbt_map(d);
  EXPECT_EQ(map[3], 2);
  EXPECT_EQ(std::count(map.begin(), map.end(), 0), 63);
  // Through the image dev id, and an EINVAL range after a good one keeps the good one.
  DevId image = image_of(second, d);
  std::vector<SectorRange> ranges{{128 * 10, 128 * 2}, {128 * 63, 129}};
  EXPECT_EQ(err_of(sim_->mark_dirty(image, ranges)), EINVAL);
  map = cbt_map(d);
  EXPECT_EQ(map[10], 2);
  EXPECT_EQ(map[11], 2);
  EXPECT_EQ(map[63], 0);
  EXPECT_EQ(err_of(sim_->mark_dirty(DevId{241, 9}, std::vector<SectorRange>{r})), ENODEV);
  ASSERT_TRUE(sim_->destroy_snapshot(second).has_value());
  // The write map was raised to 3: the next take shows it.
  Uuid third = take_new({d});
  map = cbt_map(d);
  EXPECT_EQ(map[3], 3);
  EXPECT_EQ(map[10], 3);
  EXPECT_EQ(map[63], 0);
  ASSERT_TRUE(sim_->destroy_snapshot(third).has_value());
}

TEST_F(SimKernelTest, RemoveTrackerErrnosAndNewGeneration) {
  DevId d = dev(make_device("a.img", kDev));
  EXPECT_EQ(err_of(sim_->remove_tracker(d)), ENODATA);
  Uuid id = take_new({d});
  Uuid gen = info(d).generation_id;
  EXPECT_EQ(err_of(sim_->remove_tracker(d)), EBUSY);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  ASSERT_TRUE(sim_->remove_tracker(d).has_value());
  EXPECT_EQ(err_of(sim_->remove_tracker(d)), ENODATA);
  Uuid next = take_new({d});
  EXPECT_NE(info(d).generation_id, gen);
  EXPECT_EQ(info(d).snap_number, 1);
  ASSERT_TRUE(sim_->destroy_snapshot(next).has_value());
}

TEST_F(SimKernelTest, SnapNumbersCountTakesAndWrapAt256WithANewGeneration) {
  DevId d = dev(make_device("a.img", 1 << 20));  // 16 blocks
  std::vector<uint8_t> block(512, 0xab);
  Uuid first_gen{}, wrapped_gen{};
  for (int take = 1; take <= 256; ++take) {
    // One simulated write per interval, to block (take % 16).
    ASSERT_TRUE(sim_->write(path("a.img"), uint64_t(take % 16) * 65536, block).has_value());
    Uuid id = take_new({d}, 1 << 20);
    CbtInfo i = info(d);
    std::vector<uint8_t> map = cbt_map(d);
    if (take == 1) first_gen = i.generation_id;
    if (take < 255) {
      ASSERT_EQ(i.snap_number, take);
      ASSERT_EQ(i.generation_id, first_gen);
      if (take > 1) {
        ASSERT_EQ(map[take % 16], take);
      }
    } else if (take == 255) {
      // active reached 256: the wrap take reports (new generation, 255), its read
      // map still holding the old generation's numbers (SEMANTICS.md §3).
      ASSERT_EQ(i.snap_number, 255);
      ASSERT_NE(i.generation_id, first_gen);
      ASSERT_EQ(map[255 % 16], 255);
      wrapped_gen = i.generation_id;
    } else {
      ASSERT_EQ(i.snap_number, 1);
      ASSERT_EQ(i.generation_id, wrapped_gen);
      ASSERT_EQ(map[256 % 16], 1);
      ASSERT_EQ(map[255 % 16], 0);  // the write map was zeroed at the wrap
    }
    ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  }
}

TEST_F(SimKernelTest, LowFreeSpaceEventAtCreateAndAtHalfMinimumLeft) {
  DevId d = dev(make_device("a.img", kDev));
  auto id = sim_->create_snapshot(std::vector<DevId>{d});
  ASSERT_TRUE(id.has_value());
  auto ev = sim_->wait_event(*id, 0);
  ASSERT_TRUE(ev.has_value() && ev->has_value());
  EXPECT_EQ((*ev)->code, Event::Code::kLowFreeSpace);
  EXPECT_EQ((*ev)->requested_sectors, kMinimumSectors);
  EXPECT_GT((*ev)->time_label_ns, 0);
  // Timeout is in milliseconds.
  auto t0 = std::chrono::steady_clock::now();
  auto none = sim_->wait_event(*id, 50);
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
  // Answer with exactly the requested 1 MiB; 4 chunks of 256 KiB.
  auto ext = sim_->map_storage_file(make_storage("s0", kMinimumSectors * 512));
  ASSERT_TRUE(ext.has_value());
  ASSERT_TRUE(sim_->append_storage(*id, ext->storage_dev, ext->ranges).has_value());
  ASSERT_TRUE(sim_->take_snapshot(*id).has_value());
  std::vector<uint8_t> data(512, 1);
  // Chunk 1: requested - filled = 2048 - 512 = 1536 > 1024: no event.
  ASSERT_TRUE(sim_->write(path("a.img"), 0, data).has_value());
  EXPECT_FALSE(sim_->wait_event(*id, 0)->has_value());
  // Chunk 2: 2048 - 1024 <= 1024: event asking for another minimum.
  ASSERT_TRUE(sim_->write(path("a.img"), 256 << 10, data).has_value());
  ev = sim_->wait_event(*id, 0);
  ASSERT_TRUE(ev.has_value() && ev->has_value());
  EXPECT_EQ((*ev)->code, Event::Code::kLowFreeSpace);
  EXPECT_EQ((*ev)->requested_sectors, kMinimumSectors);
  // The flag stays up until an append brings capacity to requested (4096).
  ASSERT_TRUE(sim_->write(path("a.img"), 512 << 10, data).has_value());
  auto ext2 = sim_->map_storage_file(make_storage("s1", 1024 * 512));
  ASSERT_TRUE(sim_->append_storage(*id, ext2->storage_dev, ext2->ranges).has_value());  // 3072 < 4096
  auto view = sim_->inspect();
  ASSERT_TRUE(view.has_value());
  EXPECT_TRUE(view->snapshots[0].low_space);
  EXPECT_EQ(view->snapshots[0].requested_sectors, 4096u);
  EXPECT_EQ(view->snapshots[0].filled_sectors, 1536u);
  auto ext3 = sim_->map_storage_file(make_storage("s2", 1024 * 512));
  ASSERT_TRUE(sim_->append_storage(*id, ext3->storage_dev, ext3->ranges).has_value());  // 4096
  view = sim_->inspect();
  EXPECT_FALSE(view->snapshots[0].low_space);
  EXPECT_FALSE(sim_->wait_event(*id, 0)->has_value());
}

TEST_F(SimKernelTest, EventsAreFifoAndEachGoesToOneCaller) {
  DevId d = dev(make_device("a.img", kDev));
  Uuid id = create_with_storage({d}, 4 << 20);
  ASSERT_TRUE(sim_->take_snapshot(id).has_value());
  ASSERT_TRUE(sim_->set_storage_limit(1024).has_value());  // two chunks
  std::vector<uint8_t> data(512, 1);
  ASSERT_TRUE(sim_->write(path("a.img"), 0, data).has_value());
  ASSERT_TRUE(sim_->write(path("a.img"), 256 << 10, data).has_value());  // half the minimum left: event
  ASSERT_TRUE(sim_->write(path("a.img"), 1 << 20, data).has_value());    // past the cap: overflow
  ASSERT_TRUE(sim_->write(path("a.img"), 2 << 20, data).has_value());    // no second corrupted event
  auto first = sim_->wait_event(id, 0);
  ASSERT_TRUE(first.has_value() && first->has_value());
  EXPECT_EQ((*first)->code, Event::Code::kLowFreeSpace);
  auto second = sim_->wait_event(id, 0);
  ASSERT_TRUE(second.has_value() && second->has_value());
  EXPECT_EQ((*second)->code, Event::Code::kCorrupted);
  EXPECT_EQ((*second)->corrupted_device, d);
  EXPECT_EQ((*second)->error_code, 28);
  EXPECT_LE((*first)->time_label_ns, (*second)->time_label_ns);
  EXPECT_FALSE(sim_->wait_event(id, 0)->has_value());
  // The original keeps working.
  EXPECT_EQ(file_bytes(path("a.img"))[2 << 20], 1);
}

TEST_F(SimKernelTest, ConcurrentWaitersFromTwoInstancesGetTheEventOnce) {
  DevId d = dev(make_device("a.img", kDev));
  auto other = open_sim();
  auto id = sim_->create_snapshot(std::vector<DevId>{d});
  ASSERT_TRUE(id.has_value());
  std::optional<Event> got_a, got_b;
  std::thread ta([&] { got_a = sim_->wait_event(*id, 200).value_or(std::nullopt); });
  std::thread tb([&] { got_b = other->wait_event(*id, 200).value_or(std::nullopt); });
  ta.join();
  tb.join();
  EXPECT_NE(got_a.has_value(), got_b.has_value());
  ASSERT_TRUE(sim_->destroy_snapshot(*id).has_value());
  EXPECT_EQ(err_of(other->wait_event(*id, 0)), ESRCH);
}

TEST_F(SimKernelTest, StatePersistsAcrossInstancesAndDropStateIsAModuleReload) {
  DevId d = dev(make_device("a.img", kDev));
  Uuid id = take_new({d});
  Uuid gen = info(d).generation_id;
  sim_ = open_sim();
  EXPECT_EQ(*sim_->snapshots(), std::vector<Uuid>{id});
  EXPECT_EQ(info(d).generation_id, gen);
  EXPECT_EQ(err_of(sim_->take_snapshot(id)), EALREADY);
  ASSERT_TRUE(sim_->drop_state().has_value());
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_TRUE(sim_->tracked_devices()->empty());
  EXPECT_EQ(dev(path("a.img")), d);  // device numbers do not change on reload
  Uuid next = take_new({d});
  EXPECT_NE(info(d).generation_id, gen);
  EXPECT_EQ(info(d).snap_number, 1);
  ASSERT_TRUE(sim_->destroy_snapshot(next).has_value());
}

TEST_F(SimKernelTest, ResizeBeforeTakeResetsTheMapWithANewGeneration) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d});
  Uuid gen = info(d).generation_id;
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  ASSERT_EQ(::truncate(p.c_str(), 2 * kDev), 0);
  id = take_new({d});
  CbtInfo i = info(d);
  EXPECT_NE(i.generation_id, gen);
  EXPECT_EQ(i.block_count, 128u);
  EXPECT_EQ(i.capacity_bytes, 2 * kDev);
  EXPECT_EQ(i.snap_number, 1);
  std::vector<uint8_t> map = cbt_map(d);
  EXPECT_EQ(std::count(map.begin(), map.end(), 0), 128);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
}

TEST_F(SimKernelTest, WritePastTheMapFlagsItCorruptedUntilTheNextTakeResetsIt) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d});
  Uuid gen = info(d).generation_id;
  ASSERT_EQ(::truncate(p.c_str(), kDev + 65536), 0);  // grown behind the module's back
  ASSERT_TRUE(sim_->write(p, kDev, std::vector<uint8_t>(10, 1)).has_value());
  std::vector<uint8_t> map(64);
  EXPECT_EQ(err_of(sim_->read_cbt_map(d, 0, map)), EFAULT);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  id = take_new({d});
  CbtInfo i = info(d);
  EXPECT_NE(i.generation_id, gen);
  EXPECT_EQ(i.block_count, 65u);
  EXPECT_EQ(i.snap_number, 1);
  EXPECT_EQ(cbt_map(d), std::vector<uint8_t>(65, 0));
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
}

TEST_F(SimKernelTest, ListBugFaultHidesEarlierSnapshots) {
  DevId a = dev(make_device("a.img", kDev));
  DevId b = dev(make_device("b.img", kDev));
  ASSERT_TRUE(sim_->set_list_bug(true).has_value());
  Uuid first = take_new({a});
  Uuid second = take_new({b});
  EXPECT_EQ(*sim_->snapshots(), std::vector<Uuid>{second});
  EXPECT_EQ(err_of(sim_->destroy_snapshot(first)), ENODEV);
  EXPECT_EQ(err_of(sim_->create_snapshot(std::vector<DevId>{a})), EALREADY);
  ASSERT_TRUE(sim_->clear_faults().has_value());
  EXPECT_FALSE(sim_->inspect()->list_bug);
}

TEST_F(SimKernelTest, CorruptStateFileIsRefusedWithItsName) {
  sim_.reset();
  std::string state = state_dir() + "/state";
  std::vector<uint8_t> bytes = file_bytes(state);
  bytes[bytes.size() - 9] ^= 0x40;
  write_bytes(state, bytes);
  auto m = SimModule::open(state_dir());
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(m.error().message().find(state), std::string::npos) << m.error().message();
}

}  // namespace
}  // namespace blkvault::kernel
