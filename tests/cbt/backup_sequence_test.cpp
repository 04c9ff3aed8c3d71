// cbt::plan_read driven by the simulated module across the 8-bit snap number
// wrap: a backup after every take, each recording its baseline, never misses a
// written block, and every incremental plan is exactly the blocks written since
// the previous backup.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "cbt/changed_extents.h"
#include "kernel/sim_module.h"
#include "temp_dir.h"

namespace blkvault::cbt {
namespace {

constexpr uint64_t kBlock = 65536;
constexpr uint64_t kBlocks = 16;
constexpr uint64_t kCapacity = kBlocks * kBlock - 512;  // partial last block

uint64_t seed_from_env() {
  if (const char* env = std::getenv("BLKVAULT_TEST_SEED")) return std::strtoull(env, nullptr, 0);
  return std::random_device{}();
}

std::set<uint64_t> blocks_of(const ChangedExtents& c) {
  std::set<uint64_t> out;
  for (const ByteExtent& e : c.extents)
    for (uint64_t b = e.offset_bytes / kBlock; b * kBlock < e.offset_bytes + e.length_bytes; ++b) out.insert(b);
  return out;
}

TEST(PlanReadOnTheSimulation, BackupAfterEveryTakeAcrossTheWrapIsFullThreeTimesAndOtherwiseExact) {
  const uint64_t seed = seed_from_env();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  const std::string disk = dir / "disk.img";
  {
    int fd = ::open(disk.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(kCapacity)), 0);
    ::close(fd);
  }
  auto opened = kernel::SimModule::open(dir / "sim", kernel::SimOptions{.diff_storage_minimum_sectors = 2048});
  ASSERT_TRUE(opened) << opened.error().message();
  kernel::SimModule& sim = **opened;
  auto dev = sim.device_id(disk);
  ASSERT_TRUE(dev);
  const std::vector<kernel::DevId> devices{*dev};

  std::optional<Baseline> baseline;
  std::set<uint64_t> written;  // blocks written since the last backup
  std::vector<std::string> full_reads;
  std::vector<uint8_t> data(512);
  for (int take = 1; take <= 258; ++take) {
    SCOPED_TRACE("take " + std::to_string(take));
    // 0..3 writes through the simulated filter, sometimes in the partial last block.
    for (int w = static_cast<int>(rng() % 4); w > 0; --w) {
      uint64_t block = rng() % kBlocks;
      uint64_t offset = block * kBlock + (rng() % (block + 1 == kBlocks ? 127 : 128)) * 512;
      std::fill(data.begin(), data.end(), static_cast<uint8_t>(rng()));
      ASSERT_TRUE(sim.write(disk, offset, data));
      written.insert(block);
    }
    auto id = sim.create_snapshot(devices);
    ASSERT_TRUE(id) << id.error().message();
    const std::string storage = dir / "storage";  // one path: one registered storage device
    {
      int fd = ::open(storage.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::posix_fallocate(fd, 0, 1 << 20), 0);
      ::close(fd);
    }
    auto extents = sim.map_storage_file(storage);
    ASSERT_TRUE(extents) << extents.error().message();
    ASSERT_TRUE(sim.append_storage(*id, extents->storage_dev, extents->ranges));
    ASSERT_TRUE(sim.take_snapshot(*id));
    auto infos = sim.tracked_devices();
    ASSERT_TRUE(infos && infos->size() == 1);
    const kernel::CbtInfo info = (*infos)[0];
    std::vector<uint8_t> map(info.block_count);
    ASSERT_TRUE(sim.read_cbt_map(*dev, 0, map));

    Plan plan = plan_read(info, map, baseline, 256 << 10);
    if (auto* full = std::get_if<FullRead>(&plan)) {
      full_reads.push_back(std::to_string(take) + ": " + to_string(full->reason));
    } else {
      const ChangedExtents& c = std::get<ChangedExtents>(plan);
      // 256 KiB chunks = 4 blocks: the plan covers each written block's chunk, no more.
      std::set<uint64_t> want;
      for (uint64_t b : written)
        for (uint64_t x = b / 4 * 4; x < b / 4 * 4 + 4 && x < kBlocks; ++x) want.insert(x);
      ASSERT_EQ(blocks_of(c), want);
      std::set<uint64_t> changed;
      for (uint64_t b = 0; b < map.size(); ++b)
        if (map[b] > baseline->snap_number) changed.insert(b);
      ASSERT_EQ(changed, written) << "the changed blocks are exactly the written ones";
    }
    baseline = from_info(info);  // the backup succeeded
    written.clear();
    ASSERT_TRUE(sim.destroy_snapshot(*id));
    ::unlink(storage.c_str());
  }
  EXPECT_EQ(full_reads, (std::vector<std::string>{"1: no baseline", "255: CBT generation changed",
                                                  "256: CBT snapshot number did not advance (wrap)"}));
}

// Writes through the simulation and behind its back (plain pwrite, sometimes of
// identical bytes): with a chunk of one CBT block, the plan of every incremental
// backup is exactly the blocks written through the simulation plus the blocks
// whose content changed — the changed set as cbt/ computes it.
TEST(PlanReadOnTheSimulation, PlanIsExactlyTheSimulatedWritesPlusTheOutsideContentChanges) {
  const uint64_t seed = seed_from_env();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  const std::string disk = dir / "disk.img";
  std::vector<uint8_t> contents(kCapacity);
  for (auto& b : contents) b = static_cast<uint8_t>(rng());
  auto write_outside = [&](uint64_t offset, const std::vector<uint8_t>& bytes) {
    int fd = ::open(disk.c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  };
  write_outside(0, contents);
  auto opened = kernel::SimModule::open(dir / "sim", kernel::SimOptions{.diff_storage_minimum_sectors = 2048});
  ASSERT_TRUE(opened) << opened.error().message();
  kernel::SimModule& sim = **opened;
  const kernel::DevId dev = sim.device_id(disk).value();
  const std::string storage = dir / "storage";

  std::optional<Baseline> baseline;
  std::vector<uint8_t> at_backup = contents;
  for (int round = 0; round < 25; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::set<uint64_t> through_sim;
    for (int w = static_cast<int>(rng() % 5); w > 0; --w) {
      uint64_t len = 1 + rng() % (2 * kBlock);
      uint64_t offset = rng() % (kCapacity - len);
      std::vector<uint8_t> bytes(len);
      switch (rng() % 3) {
        case 0:  // through the simulated filter, in whole sectors
          offset = offset / 512 * 512;
          bytes.resize((len + 511) / 512 * 512);
          if (offset + bytes.size() > kCapacity) offset = kCapacity - bytes.size();
          for (auto& b : bytes) b = static_cast<uint8_t>(rng());
          ASSERT_TRUE(sim.write(disk, offset, bytes));
          for (uint64_t b = offset / kBlock; b <= (offset + bytes.size() - 1) / kBlock; ++b) through_sim.insert(b);
          break;
        case 1:  // behind its back, the same bytes again: no change
          bytes.assign(contents.begin() + static_cast<ptrdiff_t>(offset),
                       contents.begin() + static_cast<ptrdiff_t>(offset + len));
          write_outside(offset, bytes);
          break;
        default:  // behind its back, new bytes
          for (auto& b : bytes) b = static_cast<uint8_t>(rng());
          write_outside(offset, bytes);
          break;
      }
      std::copy(bytes.begin(), bytes.end(), contents.begin() + static_cast<ptrdiff_t>(offset));
    }
    std::set<uint64_t> want = through_sim;
    for (uint64_t b = 0; b < kBlocks; ++b) {
      const auto from = static_cast<ptrdiff_t>(b * kBlock);
      const auto to = static_cast<ptrdiff_t>(std::min(kCapacity, (b + 1) * kBlock));
      if (!std::equal(contents.begin() + from, contents.begin() + to, at_backup.begin() + from)) want.insert(b);
    }

    auto id = sim.create_snapshot(std::vector<kernel::DevId>{dev});
    ASSERT_TRUE(id) << id.error().message();
    {
      int fd = ::open(storage.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::posix_fallocate(fd, 0, 1 << 20), 0);
      ::close(fd);
    }
    auto extents = sim.map_storage_file(storage);
    ASSERT_TRUE(extents) << extents.error().message();
    ASSERT_TRUE(sim.append_storage(*id, extents->storage_dev, extents->ranges));
    ASSERT_TRUE(sim.take_snapshot(*id));
    const kernel::CbtInfo info = sim.tracked_devices().value().at(0);
    std::vector<uint8_t> map(info.block_count);
    ASSERT_TRUE(sim.read_cbt_map(dev, 0, map));
    Plan plan = plan_read(info, map, baseline, kBlock);
    if (round == 0) {
      ASSERT_EQ(std::get<FullRead>(plan).reason, FullReadReason::kNoBaseline);
    } else {
      ASSERT_TRUE(std::holds_alternative<ChangedExtents>(plan)) << to_string(std::get<FullRead>(plan).reason);
      ASSERT_EQ(blocks_of(std::get<ChangedExtents>(plan)), want);
    }
    baseline = from_info(info);
    at_backup = contents;
    ASSERT_TRUE(sim.destroy_snapshot(*id));
  }
}

}  // namespace
}  // namespace blkvault::cbt
