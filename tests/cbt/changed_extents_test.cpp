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

// 10 blocks of 64 KiB, the last one 512 bytes short (capacity is whole sectors,
// not whole blocks), baseline taken at snap 4, now at snap 5.
constexpr uint32_t kBlock = 65536;
constexpr uint64_t kPartialCap = 10 * uint64_t{kBlock} - 512;

ChangedExtents plan_changed(const std::vector<uint8_t>& map, uint64_t chunk) {
  auto i = info(kBlock, kPartialCap, 5);
  Baseline b = from_info(i);
  b.snap_number = 4;
  auto p = plan_read(i, map, b, chunk);
  EXPECT_TRUE(std::holds_alternative<ChangedExtents>(p));
  return std::holds_alternative<ChangedExtents>(p) ? std::get<ChangedExtents>(p) : ChangedExtents{};
}

TEST(PlanRead, EveryBlockChangedIsOneExtentOfTheWholeDevice) {
  std::vector<uint8_t> map(10, 5);
  for (uint64_t chunk : {uint64_t{4096}, uint64_t{kBlock}, uint64_t{1} << 20, uint64_t{64} << 20}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    auto c = plan_changed(map, chunk);
    EXPECT_EQ(c.extents, (std::vector<ByteExtent>{{0, kPartialCap}}));
    EXPECT_EQ(c.changed_blocks, 10u);
    EXPECT_EQ(c.changed_bytes, kPartialCap);
    EXPECT_EQ(c.aligned_bytes, kPartialCap);
  }
  // Bytes above the new snap number cannot exist, but a map byte equal to it and
  // one far above the baseline count the same.
  map[3] = 200;
  EXPECT_EQ(plan_changed(map, kBlock).extents, (std::vector<ByteExtent>{{0, kPartialCap}}));
}

TEST(PlanRead, FirstBlockOnlyIsTheFirstBlockAlignedOutwardToTheChunk) {
  std::vector<uint8_t> map{5, 4, 4, 0, 3, 4, 4, 4, 4, 4};
  auto c = plan_changed(map, kBlock);
  EXPECT_EQ(c.extents, (std::vector<ByteExtent>{{0, kBlock}}));
  EXPECT_EQ(c.changed_blocks, 1u);
  EXPECT_EQ(c.changed_bytes, kBlock);
  EXPECT_EQ(c.aligned_bytes, kBlock);
  // A chunk smaller than a block: still the whole block.
  EXPECT_EQ(plan_changed(map, 4096).extents, (std::vector<ByteExtent>{{0, kBlock}}));
  // A chunk of four blocks: the first chunk.
  auto big = plan_changed(map, 4 * kBlock);
  EXPECT_EQ(big.extents, (std::vector<ByteExtent>{{0, 4 * kBlock}}));
  EXPECT_EQ(big.changed_bytes, kBlock);
  EXPECT_EQ(big.aligned_bytes, 4 * kBlock);
  // A chunk larger than the device: clipped to the capacity.
  EXPECT_EQ(plan_changed(map, 1 << 20).extents, (std::vector<ByteExtent>{{0, kPartialCap}}));
}

TEST(PlanRead, LastPartialBlockOnlyEndsAtTheCapacity) {
  std::vector<uint8_t> map{4, 4, 4, 4, 4, 4, 4, 4, 4, 5};
  const uint64_t last = 9 * uint64_t{kBlock};
  auto c = plan_changed(map, kBlock);
  EXPECT_EQ(c.extents, (std::vector<ByteExtent>{{last, kBlock - 512}}));
  EXPECT_EQ(c.changed_blocks, 1u);
  EXPECT_EQ(c.changed_bytes, kBlock - 512);
  EXPECT_EQ(c.aligned_bytes, kBlock - 512);
  EXPECT_EQ(plan_changed(map, 4096).extents, (std::vector<ByteExtent>{{last, kBlock - 512}}));
  // 256 KiB chunks: aligned down to the chunk holding block 9 (block 8's start).
  EXPECT_EQ(plan_changed(map, 4 * kBlock).extents,
            (std::vector<ByteExtent>{{8 * uint64_t{kBlock}, kPartialCap - 8 * uint64_t{kBlock}}}));
  EXPECT_EQ(plan_changed(map, 1 << 20).extents, (std::vector<ByteExtent>{{0, kPartialCap}}));
}

TEST(PlanRead, FirstAndLastBlocksStaySeparateUntilAChunkJoinsThem) {
  std::vector<uint8_t> map{5, 4, 4, 4, 4, 4, 4, 4, 4, 5};
  EXPECT_EQ(plan_changed(map, kBlock).extents,
            (std::vector<ByteExtent>{{0, kBlock}, {9 * uint64_t{kBlock}, kBlock - 512}}));
  // 256 KiB chunks: [0, 256K) and [512K, capacity) do not touch.
  EXPECT_EQ(plan_changed(map, 4 * kBlock).extents,
            (std::vector<ByteExtent>{{0, 4 * uint64_t{kBlock}}, {8 * uint64_t{kBlock}, kPartialCap - 8 * uint64_t{kBlock}}}));
  // 512 KiB chunks: [0, 512K) and [512K, capacity) are adjacent, so merged.
  auto joined = plan_changed(map, 8 * kBlock);
  EXPECT_EQ(joined.extents, (std::vector<ByteExtent>{{0, kPartialCap}}));
  EXPECT_EQ(joined.changed_blocks, 2u);
  EXPECT_EQ(joined.changed_bytes, 2 * uint64_t{kBlock} - 512);
}

// The wrap as the module reports it (SEMANTICS.md §3 "Wrap trap"): the take that
// wraps gives (new generation, 255) with the old generation's read map; the next
// gives (new generation, 1). Each backup records its baseline; no change may be
// missed and the first incremental after the wrap is exact.
TEST(PlanRead, NewGenerationAfterTheSnapNumberWrapsIsFullTwiceThenExact) {
  auto i = info(kBlock, kPartialCap, 254);
  kernel::Uuid old_generation = i.generation_id;
  Baseline b = from_info(i);  // backup at take 254 of the old generation

  // Take 255 wraps: new generation, snap 255, read map with old numbers.
  kernel::CbtInfo wrap = i;
  wrap.generation_id[0] = 99;
  wrap.snap_number = 255;
  ASSERT_NE(wrap.generation_id, old_generation);
  std::vector<uint8_t> wrap_map{255, 0, 254, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::get<FullRead>(plan_read(wrap, wrap_map, b, kBlock)).reason, FullReadReason::kGenerationChanged);
  b = from_info(wrap);  // (new, 255)

  // Next take: (new, 1), blocks written since the wrap hold 1. "byte > 255" would
  // find nothing; the plan must be a full read.
  kernel::CbtInfo after = wrap;
  after.snap_number = 1;
  std::vector<uint8_t> after_map{0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(std::get<FullRead>(plan_read(after, after_map, b, kBlock)).reason,
            FullReadReason::kSnapNumberNotAdvanced);
  b = from_info(after);  // (new, 1)

  // Next take: (new, 2): exactly the blocks written since take 1 of the new generation.
  kernel::CbtInfo next = after;
  next.snap_number = 2;
  std::vector<uint8_t> next_map{2, 1, 0, 2, 2, 0, 0, 0, 0, 1};
  auto c = std::get<ChangedExtents>(plan_read(next, next_map, b, kBlock));
  EXPECT_EQ(c.extents, (std::vector<ByteExtent>{{0, kBlock}, {3 * uint64_t{kBlock}, 2 * uint64_t{kBlock}}}));
  EXPECT_EQ(c.changed_blocks, 3u);
  EXPECT_EQ(c.changed_bytes, 3 * uint64_t{kBlock});

  // A baseline recorded before the wrap must never be trusted against the new
  // generation, whatever the numbers say.
  Baseline stale = from_info(i);
  stale.snap_number = 1;
  EXPECT_EQ(std::get<FullRead>(plan_read(next, next_map, stale, kBlock)).reason, FullReadReason::kGenerationChanged);
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
