// The simulated CBT against a reference model: random writes through the
// simulation and behind its back, snapshots in between, and for every take the
// changed set {block : read-map byte > previous snap_number} must be exactly the
// blocks written through the simulation plus the blocks whose content changed.
// Also: the cost of outside-write detection (skipped rescans, holes) and the
// lying-CBT fault.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "sim_fixture.h"

namespace blkvault::kernel {
namespace {

constexpr uint64_t kDev = 4 << 20;
constexpr uint64_t kBlock = 65536;
constexpr uint32_t kBlocks = kDev / kBlock;

std::set<uint32_t> blocks_of(uint64_t off, uint64_t len) {
  std::set<uint32_t> out;
  for (uint64_t b = off / kBlock; b <= (off + len - 1) / kBlock; ++b) out.insert(static_cast<uint32_t>(b));
  return out;
}

std::set<uint32_t> differing_blocks(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  std::set<uint32_t> out;
  for (uint32_t blk = 0; blk < kBlocks; ++blk) {
    if (!std::equal(a.begin() + blk * kBlock, a.begin() + (blk + 1) * kBlock, b.begin() + blk * kBlock))
      out.insert(blk);
  }
  return out;
}

TEST_F(SimKernelTest, ChangedSetIsExactlyTheSimulatedWritesPlusTheOutsideContentChanges) {
  uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d});  // first take: new generation, full backup
  uint8_t stored = info(d).snap_number;
  Uuid generation = info(d).generation_id;
  std::vector<uint8_t> at_take = file_bytes(p);
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::set<uint32_t> simulated;
    bool outside = false;
    int writes = static_cast<int>(rng() % 6);
    for (int w = 0; w < writes; ++w) {
      uint64_t len = 1 + rng() % (3 * kBlock);
      uint64_t off = rng() % (kDev - len);
      std::vector<uint8_t> data(len);
      switch (rng() % 4) {
        case 0: {  // through the simulation
          for (auto& b : data) b = static_cast<uint8_t>(rng());
          ASSERT_TRUE(sim_->write(p, off, data).has_value());
          auto touched = blocks_of(off, len);
          simulated.insert(touched.begin(), touched.end());
          break;
        }
        case 1: {  // behind its back, identical bytes (content unchanged)
          std::vector<uint8_t> now = file_bytes(p);
          outside_write(p, off, std::vector<uint8_t>(now.begin() + off, now.begin() + off + len));
          outside = true;
          break;
        }
        default: {  // behind its back, new bytes (sometimes just one)
          if (rng() % 2) len = 1;
          data.resize(len);
          for (auto& b : data) b = static_cast<uint8_t>(rng());
          outside_write(p, off, data);
          outside = true;
          break;
        }
      }
    }
    if (!outside) {
      // The held image still shows the take-time contents.
      auto img = read_image(image_of(id, d));
      ASSERT_TRUE(img.has_value()) << img.error().message();
      ASSERT_TRUE(*img == at_take);
    }
    ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
    std::vector<uint8_t> now = file_bytes(p);
    std::set<uint32_t> expected = differing_blocks(at_take, now);
    expected.insert(simulated.begin(), simulated.end());
    id = take_new({d});
    CbtInfo i = info(d);
    ASSERT_EQ(i.generation_id, generation);
    ASSERT_GT(i.snap_number, stored);
    std::vector<uint8_t> map = cbt_map(d);
    std::set<uint32_t> reported;
    for (uint32_t b = 0; b < kBlocks; ++b)
      if (map[b] > stored) reported.insert(b);
    ASSERT_EQ(reported, expected);
    stored = i.snap_number;
    at_take = now;
  }
}

TEST_F(SimKernelTest, UnchangedQuietImageFileIsNotRescannedButAnOutsideWriteIs) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // past the timestamp granularity
  Uuid id = take_new({d});
  EXPECT_EQ(sim_->fingerprint_bytes_read(), kDev);  // the first scan reads everything
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  id = take_new({d});
  EXPECT_EQ(sim_->fingerprint_bytes_read(), kDev);  // stamp unchanged and trusted: skipped
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  outside_write(p, 7 * kBlock, {42});
  id = take_new({d});
  EXPECT_EQ(sim_->fingerprint_bytes_read(), 2 * kDev);
  std::vector<uint8_t> map = cbt_map(d);
  EXPECT_EQ(map[7], info(d).snap_number);
  EXPECT_EQ(std::count(map.begin(), map.end(), 0), kBlocks - 1);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  // Another process's scans are as good as ours: a fresh instance skips too,
  // once the file has been quiet for a while.
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  id = take_new({d});
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  auto other = open_sim();
  uint64_t before = sim_->fingerprint_bytes_read();
  auto again = other->create_snapshot(std::vector<DevId>{d});
  ASSERT_TRUE(again.has_value());
  auto ext = other->map_storage_file(make_storage("s", 1 << 20));
  ASSERT_TRUE(other->append_storage(*again, ext->storage_dev, ext->ranges).has_value());
  ASSERT_TRUE(other->take_snapshot(*again).has_value());
  EXPECT_EQ(other->fingerprint_bytes_read(), 0u);
  EXPECT_EQ(sim_->fingerprint_bytes_read(), before);
}

TEST_F(SimKernelTest, ADeviceWrittenOnlyThroughTheSimulationIsNeverScanned) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  ASSERT_TRUE(sim_->set_outside_writes(p, /*detect=*/false).has_value());
  Uuid id = take_new({d});  // the first take reads nothing either
  uint8_t stored = info(d).snap_number;
  std::vector<uint8_t> at_take = file_bytes(p);
  ASSERT_TRUE(sim_->write(p, 3 * kBlock + 100, std::vector<uint8_t>(2 * kBlock, 9)).has_value());
  // Copy-on-write still keeps the held image at its take-time contents.
  auto img = read_image(image_of(id, d));
  ASSERT_TRUE(img.has_value()) << img.error().message();
  EXPECT_TRUE(*img == at_take);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  outside_write(p, 10 * kBlock, {static_cast<uint8_t>(file_bytes(p)[10 * kBlock] ^ 0xff)});  // declared impossible: not seen
  id = take_new({d});
  EXPECT_EQ(sim_->fingerprint_bytes_read(), 0u);
  std::vector<uint8_t> map = cbt_map(d);
  std::set<uint32_t> reported;
  for (uint32_t b = 0; b < kBlocks; ++b)
    if (map[b] > stored) reported.insert(b);
  EXPECT_EQ(reported, (std::set<uint32_t>{3, 4, 5}));
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  auto view = sim_->inspect();
  ASSERT_TRUE(view.has_value());
  ASSERT_EQ(view->sim_writes_only.size(), 1u);
  // Persisted: another process sees the declaration. Back to detect: the next
  // take makes fingerprints again (finding nothing), the one after that finds
  // an outside write.
  auto other = open_sim();
  ASSERT_EQ(other->inspect()->sim_writes_only.size(), 1u);
  ASSERT_TRUE(other->set_outside_writes(p, /*detect=*/true).has_value());
  EXPECT_TRUE(sim_->inspect()->sim_writes_only.empty());
  stored = info(d).snap_number;
  id = take_new({d});
  EXPECT_EQ(sim_->fingerprint_bytes_read(), kDev);
  map = cbt_map(d);
  EXPECT_EQ(std::count_if(map.begin(), map.end(), [&](uint8_t v) { return v > stored; }), 0);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  stored = info(d).snap_number;
  outside_write(p, 12 * kBlock, {static_cast<uint8_t>(file_bytes(p)[12 * kBlock] ^ 0xff)});
  id = take_new({d});
  map = cbt_map(d);
  EXPECT_GT(map[12], stored);
  EXPECT_EQ(std::count_if(map.begin(), map.end(), [&](uint8_t v) { return v > stored; }), 1);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
}

TEST_F(SimKernelTest, HolesAreFingerprintedWithoutReadingThem) {
  std::string p = path("sparse.img");
  {
    int fd = ::open(p.c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 64 << 20), 0);
    ::close(fd);
  }
  outside_write(p, 10 * kBlock, std::vector<uint8_t>(kBlock, 3));
  DevId d = dev(p);
  Uuid id = take_new({d});
  // Only the data extent is read (filesystems may round extents to a few blocks).
  EXPECT_LE(sim_->fingerprint_bytes_read(), 4 * kBlock);
  EXPECT_GE(sim_->fingerprint_bytes_read(), kBlock);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  outside_write(p, 900 * kBlock, {1});  // data into a hole is noticed
  id = take_new({d});
  std::vector<uint8_t> map = cbt_map(d);
  EXPECT_EQ(map[900], 2);
  EXPECT_EQ(std::count(map.begin(), map.end(), 0), 1023);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
}

TEST_F(SimKernelTest, LostWriteChangesTheDeviceButNeitherTheMapNorTheFingerprints) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d});
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  ASSERT_TRUE(sim_->lose_next_write(d).has_value());
  EXPECT_EQ(sim_->inspect()->lost_writes_pending, 1u);
  ASSERT_TRUE(sim_->write(p, 3 * kBlock, std::vector<uint8_t>(10, 0x77)).has_value());
  ASSERT_TRUE(sim_->write(p, 9 * kBlock, std::vector<uint8_t>(10, 0x78)).has_value());  // recorded
  EXPECT_EQ(sim_->inspect()->lost_writes_pending, 0u);
  EXPECT_EQ(file_bytes(p)[3 * kBlock], 0x77);
  id = take_new({d});
  std::vector<uint8_t> map = cbt_map(d);
  EXPECT_EQ(map[3], 0);  // the lie
  EXPECT_EQ(map[9], 2);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
}

}  // namespace
}  // namespace blkvault::kernel
