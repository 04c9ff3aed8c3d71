#include "cbt/changed_extents.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

namespace blkvault::cbt {
namespace {

kernel::CbtInfo info(uint32_t bs, uint64_t cap, uint8_t snap) {
  kernel::CbtInfo i;
  i.block_size_bytes = bs;
  i.capacity_bytes = cap;
  i.block_count = static_cast<uint32_t>((cap + bs - 1) / bs);
  i.generation_id[0] = 7;
  i.snap_number = snap;
  return i;
}

TEST(PlanRead, FullWithoutBaseline) {
  auto i = info(4096, 16384, 1);
  std::vector<uint8_t> map(4, 0);
  auto p = plan_read(i, map, std::nullopt, 4096);
  EXPECT_EQ(std::get<FullRead>(p).reason, FullReadReason::kNoBaseline);
}

TEST(PlanRead, WrapSameGenerationSmallerNumberIsFull) {
  auto i = info(4096, 16384, 1);
  Baseline b = from_info(i);
  b.snap_number = 255;
  std::vector<uint8_t> map(4, 1);
  EXPECT_EQ(std::get<FullRead>(plan_read(i, map, b, 4096)).reason, FullReadReason::kSnapNumberNotAdvanced);
}

TEST(PlanRead, ChangedBlocksCoalescedAlignedAndClipped) {
  auto i = info(4096, 4 * 4096 + 100, 3);  // partial last block
  Baseline b = from_info(i);
  b.snap_number = 2;
  std::vector<uint8_t> map = {3, 3, 0, 2, 3};
  auto c = std::get<ChangedExtents>(plan_read(i, map, b, 4096));
  EXPECT_EQ(c.extents, (std::vector<ByteExtent>{{0, 8192}, {16384, 100}}));
  EXPECT_EQ(c.changed_blocks, 3u);
  EXPECT_EQ(c.changed_bytes, 8192u + 100u);
  auto big = std::get<ChangedExtents>(plan_read(i, map, b, 16384));
  EXPECT_EQ(big.extents, (std::vector<ByteExtent>{{0, 16484}}));
}

TEST(PlanRead, MapSizeMismatchIsFull) {
  auto i = info(4096, 16384, 3);
  Baseline b = from_info(i);
  b.snap_number = 2;
  std::vector<uint8_t> map(3, 0);
  EXPECT_EQ(std::get<FullRead>(plan_read(i, map, b, 4096)).reason, FullReadReason::kMapSizeMismatch);
}

TEST(Baseline, RoundTripsThroughItsString) {
  auto b = from_info(info(65536, 1 << 30, 200));
  auto d = Baseline::decode(b.encode());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, b);
  EXPECT_FALSE(Baseline::decode("cbt1 x 1 2 3").has_value());
}


TEST(PlanRead, EachBaselineMismatchGivesItsReason) {
  auto i = info(4096, 16384, 3);
  std::vector<uint8_t> map(4, 0);
  Baseline b = from_info(i);
  b.snap_number = 2;
  Baseline g = b; g.generation_id[0] = 8;
  Baseline s = b; s.block_size_bytes = 8192;
  Baseline c = b; c.capacity_bytes = 8192;
  Baseline same = b; same.snap_number = 3;
  EXPECT_EQ(std::get<FullRead>(plan_read(i, map, g, 4096)).reason, FullReadReason::kGenerationChanged);
  EXPECT_EQ(std::get<FullRead>(plan_read(i, map, s, 4096)).reason, FullReadReason::kBlockSizeChanged);
  EXPECT_EQ(std::get<FullRead>(plan_read(i, map, c, 4096)).reason, FullReadReason::kCapacityChanged);
  EXPECT_EQ(std::get<FullRead>(plan_read(i, map, same, 4096)).reason, FullReadReason::kSnapNumberNotAdvanced);
  auto none = std::get<ChangedExtents>(plan_read(i, map, b, 4096));
  EXPECT_TRUE(none.extents.empty());
  EXPECT_EQ(none.changed_blocks, 0u);
}

TEST(PlanRead, MatchesBruteForceOnRandomMaps) {
  uint64_t seed = std::getenv("BLKVAULT_TEST_SEED") ? std::strtoull(std::getenv("BLKVAULT_TEST_SEED"), nullptr, 10)
                                                     : std::random_device{}();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 300; ++round) {
    uint32_t bs = 512u << (rng() % 4);
    uint64_t cap = 1 + rng() % (64 * bs);
    auto i = info(bs, cap, 5);
    Baseline b = from_info(i);
    b.snap_number = 4;
    std::vector<uint8_t> map(i.block_count);
    for (auto& m : map) m = static_cast<uint8_t>(rng() % 7);
    uint64_t chunk = 256u << (rng() % 6);
    auto c = std::get<ChangedExtents>(plan_read(i, map, b, chunk));
    std::vector<bool> want(cap, false), got(cap, false);
    for (uint64_t blk = 0; blk < map.size(); ++blk) {
      if (map[blk] <= 4) continue;
      for (uint64_t x = blk * bs / chunk * chunk; x < std::min(cap, ((blk + 1) * bs + chunk - 1) / chunk * chunk); ++x)
        want[x] = true;
    }
    uint64_t end = 0;
    for (const auto& e : c.extents) {
      ASSERT_TRUE(e.offset_bytes > end || (end == 0 && e.offset_bytes == 0)) << "not sorted/coalesced";
      for (uint64_t x = e.offset_bytes; x < e.offset_bytes + e.length_bytes; ++x) got[x] = true;
      end = e.offset_bytes + e.length_bytes;
    }
    ASSERT_EQ(got, want) << "round " << round;
  }
}

}  // namespace
}  // namespace blkvault::cbt
