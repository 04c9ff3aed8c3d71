// Copy-on-write, images and their failure modes in the simulated module: images
// keep the take-time contents while the device is written (also from another
// process), overflow and outside writes corrupt the image, injected read errors.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <random>

#include "sim_fixture.h"

namespace blkvault::kernel {
namespace {

constexpr uint64_t kDev = 4 << 20;  // 64 blocks of 64 KiB, 16 chunks of 256 KiB

std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST_F(SimKernelTest, ImageKeepsTakeTimeContentsWhileTheDeviceIsWrittenThroughTheSimulation) {
  uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d}, 8 << 20);
  std::vector<uint8_t> at_take = file_bytes(p);
  std::vector<uint8_t> expected = at_take;
  DevId image = image_of(id, d);
  for (int i = 0; i < 40; ++i) {
    uint64_t len = 1 + rng() % (300 << 10);
    uint64_t off = rng() % (kDev - len);
    auto data = random_bytes(rng, len);
    ASSERT_TRUE(sim_->write(p, off, data).has_value());
    std::copy(data.begin(), data.end(), expected.begin() + static_cast<ptrdiff_t>(off));
    if (i % 10 == 9) {
      auto img = read_image(image, 1 + rng() % (1 << 20));
      ASSERT_TRUE(img.has_value()) << img.error().message();
      ASSERT_TRUE(*img == at_take);
    }
  }
  EXPECT_TRUE(file_bytes(p) == expected);
  auto img = read_image(image);
  ASSERT_TRUE(img.has_value()) << img.error().message();
  EXPECT_TRUE(*img == at_take);
  auto view = sim_->inspect();
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->snapshots[0].filled_sectors, view->snapshots[0].devices[0].cow_chunks * 512);
  EXPECT_FALSE(view->snapshots[0].devices[0].corrupted);
}

TEST_F(SimKernelTest, CopyOnWriteStoresTheOldChunkInTheDiffStorageFile) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = create_with_storage({d}, 1 << 20, "store");
  ASSERT_TRUE(sim_->take_snapshot(id).has_value());
  std::vector<uint8_t> old = file_bytes(p);
  ASSERT_TRUE(sim_->write(p, (512 << 10) + 100, std::vector<uint8_t>(10, 0xee)).has_value());
  std::vector<uint8_t> storage = file_bytes(path("store"));
  // Chunk 2 ([512 KiB, 768 KiB)) went to the first free 256 KiB of the storage.
  EXPECT_TRUE(std::equal(storage.begin(), storage.begin() + (256 << 10), old.begin() + (512 << 10)));
  EXPECT_EQ(file_bytes(p)[(512 << 10) + 100], 0xee);
}

TEST_F(SimKernelTest, ImageStaysConsistentWhileAnotherProcessWritesTheDevice) {
  uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d}, 8 << 20);
  std::vector<uint8_t> at_take = file_bytes(p);
  DevId image = image_of(id, d);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto other = SimModule::open(state_dir());
    if (!other) ::_exit(2);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 60; ++i) {
      uint64_t len = 1 + rng() % (128 << 10);
      uint64_t off = rng() % (kDev - len);
      if (!(*other)->write(p, off, random_bytes(rng, len))) ::_exit(3);
    }
    ::_exit(0);
  }
  auto reader = sim_->open_image(image);
  ASSERT_TRUE(reader.has_value());
  int rounds = 0;
  int status = 0;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    bool done = ::waitpid(child, &status, WNOHANG) == child;
    for (uint64_t off = 0; off < kDev; off += buf.size()) {
      Status st = (*reader)->read_at(off, buf);
      ASSERT_TRUE(st.has_value()) << st.error().message();
      ASSERT_TRUE(std::equal(buf.begin(), buf.end(), at_take.begin() + static_cast<ptrdiff_t>(off)))
          << "round " << rounds << " offset " << off;
    }
    ++rounds;
    if (done) break;
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(file_bytes(p) == at_take);
  EXPECT_GT(sim_->inspect()->snapshots[0].devices[0].cow_chunks, 0u);
}

TEST_F(SimKernelTest, DiffStorageOverflowCorruptsTheImageButNotTheOriginal) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = create_with_storage({d}, 256 << 10);  // one chunk
  ASSERT_TRUE(sim_->take_snapshot(id).has_value());
  DevId image = image_of(id, d);
  auto reader = sim_->open_image(image);
  ASSERT_TRUE(reader.has_value());
  std::vector<uint8_t> block(65536);
  ASSERT_TRUE((*reader)->read_at(3 << 20, block).has_value());  // fine before the overflow
  std::vector<uint8_t> data(4096, 0x5a);
  ASSERT_TRUE(sim_->write(p, 0, data).has_value());
  ASSERT_TRUE(sim_->write(p, 1 << 20, data).has_value());  // no storage left
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file_bytes(p).begin() + (1 << 20)));
  // 2048 requested - 512 filled is above the half-minimum: no low_free_space, just corrupted.
  auto ev = sim_->wait_event(id, 0);
  ASSERT_TRUE(ev.has_value() && ev->has_value());
  EXPECT_EQ((*ev)->code, Event::Code::kCorrupted);
  EXPECT_EQ((*ev)->error_code, ENOSPC);
  EXPECT_EQ((*ev)->corrupted_device, d);
  // Every read fails, also of untouched regions: EIO, as a buffered read of the
  // real image (whose requests fail with BLK_STS_NOSPC) reports it.
  Status st = (*reader)->read_at(3 << 20, block);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kIo);
  EXPECT_EQ(st.error().sys_errno(), EIO);
  EXPECT_EQ(st.error().message(),
            "reading image sim:" + state_dir() + "/veeamblksnapimg0 at offset 3145728: Input/output error");
  // CBT is unaffected, and destroy works.
  std::vector<uint8_t> map = cbt_map(d);
  EXPECT_EQ(map[0], 0);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  Uuid next = take_new({d});
  map = cbt_map(d);
  EXPECT_EQ(map[0], 2);
  EXPECT_EQ(map[16], 2);
  ASSERT_TRUE(sim_->destroy_snapshot(next).has_value());
}

TEST_F(SimKernelTest, OverflowCorruptsOtherDevicesOnlyWhenTheyNextNeedStorage) {
  std::string pa = make_device("a.img", kDev);
  std::string pb = make_device("b.img", kDev);
  DevId a = dev(pa);
  DevId b = dev(pb);
  Uuid id = create_with_storage({a, b}, 256 << 10);  // one chunk for both
  ASSERT_TRUE(sim_->take_snapshot(id).has_value());
  std::vector<uint8_t> b_at_take = file_bytes(pb);
  std::vector<uint8_t> data(100, 0x42);
  ASSERT_TRUE(sim_->write(pa, 0, data).has_value());
  ASSERT_TRUE(sim_->write(pa, 1 << 20, data).has_value());  // a overflows
  auto ev = sim_->wait_event(id, 0);
  ASSERT_TRUE(ev.has_value() && ev->has_value());
  EXPECT_EQ((*ev)->corrupted_device, a);
  EXPECT_EQ(err_of(read_image(image_of(id, a))), EIO);
  auto b_img = read_image(image_of(id, b));  // b has not needed storage yet
  ASSERT_TRUE(b_img.has_value());
  EXPECT_TRUE(*b_img == b_at_take);
  ASSERT_TRUE(sim_->write(pb, 0, data).has_value());  // the overflow is snapshot-wide
  ev = sim_->wait_event(id, 0);
  ASSERT_TRUE(ev.has_value() && ev->has_value());
  EXPECT_EQ((*ev)->code, Event::Code::kCorrupted);
  EXPECT_EQ((*ev)->corrupted_device, b);
  EXPECT_EQ((*ev)->error_code, ENOSPC);
  EXPECT_EQ(err_of(read_image(image_of(id, b))), EIO);
  // Appending storage does not revive an overflowed snapshot.
  auto more = sim_->map_storage_file(make_storage("more", 4 << 20));
  ASSERT_TRUE(sim_->append_storage(id, more->storage_dev, more->ranges).has_value());
  EXPECT_EQ(err_of(read_image(image_of(id, b))), EIO);
  EXPECT_TRUE(sim_->inspect()->snapshots[0].overflow);
}

TEST_F(SimKernelTest, OutsideWriteDuringAHeldSnapshotCorruptsTheImage) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d});
  std::vector<uint8_t> at_take = file_bytes(p);
  auto reader = sim_->open_image(image_of(id, d));
  ASSERT_TRUE(reader.has_value());
  outside_write(p, 5 * 65536 + 7, {1, 2, 3});
  std::vector<uint8_t> buf(65536);
  ASSERT_TRUE((*reader)->read_at(0, buf).has_value());  // block 0 is intact
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), at_take.begin()));
  Status st = (*reader)->read_at(4 * 65536, std::span<uint8_t>(buf).first(65536 + 8));  // touches block 5
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().sys_errno(), EIO);
  auto ev = sim_->wait_event(id, 0);  // the initial low_free_space was consumed by the fixture
  ASSERT_TRUE(ev.has_value() && ev->has_value());
  EXPECT_EQ((*ev)->code, Event::Code::kCorrupted);
  EXPECT_EQ((*ev)->error_code, EIO);
  EXPECT_EQ(err_of((*reader)->read_at(0, buf)), EIO);  // from now on, everything fails
  EXPECT_FALSE(sim_->wait_event(id, 0)->has_value());     // one event per device
}

TEST_F(SimKernelTest, DamagedDiffStorageFailsTheImageInsteadOfReturningMixedData) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = create_with_storage({d}, 1 << 20, "store");
  ASSERT_TRUE(sim_->take_snapshot(id).has_value());
  ASSERT_TRUE(sim_->write(p, 0, std::vector<uint8_t>(100, 9)).has_value());
  outside_write(path("store"), 1000, {0xff});
  auto img = read_image(image_of(id, d));
  ASSERT_FALSE(img);
  EXPECT_EQ(img.error().sys_errno(), EIO);
}

TEST_F(SimKernelTest, InjectedReadErrorFailsOnlyThatRangeWithEio) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d});
  ASSERT_TRUE(sim_->inject_read_error(d, 1 << 20, 4096).has_value());
  auto reader = sim_->open_image(image_of(id, d));
  ASSERT_TRUE(reader.has_value());
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(err_of((*reader)->read_at((1 << 20) + 4095, std::span<uint8_t>(buf).first(2))), EIO);
  EXPECT_EQ(err_of((*reader)->read_at((1 << 20) - 4096, buf)), 0);
  EXPECT_EQ(err_of((*reader)->read_at((1 << 20) + 4096, buf)), 0);
  EXPECT_EQ((*reader)->read_at(1 << 20, buf).error().code(), ErrorCode::kIo);
  // Not a corruption: no event, and other reads keep working.
  EXPECT_FALSE(sim_->wait_event(id, 0)->has_value());
  ASSERT_TRUE(sim_->clear_faults().has_value());
  EXPECT_EQ(err_of((*reader)->read_at(1 << 20, buf)), 0);
}

TEST_F(SimKernelTest, TrackerRemovedBetweenCreateAndTakeGivesAnImageWithoutCopyOnWrite) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = create_with_storage({d}, 1 << 20);
  ASSERT_TRUE(sim_->remove_tracker(d).has_value());  // the trap of SEMANTICS.md §2
  ASSERT_TRUE(sim_->take_snapshot(id).has_value());
  ASSERT_TRUE(sim_->write(p, 0, std::vector<uint8_t>(512, 0x11)).has_value());
  auto img = read_image(image_of(id, d));
  ASSERT_TRUE(img.has_value());
  EXPECT_EQ((*img)[0], 0x11);  // the live device shows through
  EXPECT_EQ(sim_->inspect()->snapshots[0].filled_sectors, 0u);
}

}  // namespace
}  // namespace blkvault::kernel
