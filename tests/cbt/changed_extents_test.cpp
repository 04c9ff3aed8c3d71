#include "cbt/changed_extents.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace blkvault::cbt
