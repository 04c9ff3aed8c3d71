// Repository::diff against a reference model: the changed chunks computed from
// both generations' full maps (device_image) and from the bytes each generation
// held, over random generations with resizes, a full read, a device missing
// from some generations, and a pruned generation in between.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>

#include "repo/diff.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {

using Ranges = std::vector<DeviceDiff::Range>;

// The reference: walk every chunk index of both images' full maps.
Ranges reference_ranges(const DeviceImage& a, const DeviceImage& b) {
  std::map<uint64_t, ChunkId> ma, mb;
  for (const auto& c : a.chunks) ma[c.chunk_index] = c.id;
  for (const auto& c : b.chunks) mb[c.chunk_index] = c.id;
  const uint64_t cs = a.chunk_size;
  const uint64_t common = std::min(a.size_bytes, b.size_bytes);
  const uint64_t longest = std::max(a.size_bytes, b.size_bytes);
  std::vector<bool> changed_byte_chunk;  // per chunk below `common`
  Ranges out;
  auto add = [&](uint64_t off, uint64_t end) {
    if (!out.empty() && out.back().offset_bytes + out.back().length_bytes == off) {
      out.back().length_bytes += end - off;
    } else {
      out.push_back({off, end - off});
    }
  };
  for (uint64_t i = 0; i * cs < common; ++i) {
    auto ia = ma.find(i), ib = mb.find(i);
    const bool za = ia == ma.end(), zb = ib == mb.end();
    const bool same = (za && zb) || (!za && !zb && ia->second == ib->second);
    if (!same) add(i * cs, std::min((i + 1) * cs, common));
  }
  if (longest > common) add(common, longest);
  return out;
}

// The chunk indices below both sizes whose bytes differ (an all-zero chunk is
// "zeros" whatever its length).
std::set<uint64_t> byte_changed(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  std::set<uint64_t> out;
  const uint64_t common = std::min(a.size(), b.size());
  for (uint64_t off = 0; off < common; off += kChunk) {
    auto slice = [&](const std::vector<uint8_t>& v) {
      std::vector<uint8_t> s(v.begin() + off, v.begin() + std::min<uint64_t>(off + kChunk, v.size()));
      if (std::all_of(s.begin(), s.end(), [](uint8_t x) { return x == 0; })) s.clear();
      return s;
    };
    if (slice(a) != slice(b)) out.insert(off / kChunk);
  }
  return out;
}

TEST_F(RepositoryTest, DiffMatchesTheReferenceModelForEveryPairOfGenerations) {
  const uint64_t seed = std::getenv("BLKVAULT_TEST_SEED") ? std::stoull(std::getenv("BLKVAULT_TEST_SEED")) : 20261125;
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init(256 << 10);
  SimDevice a{"/dev/sda", std::vector<uint8_t>(40 * kChunk + 1234)};
  SimDevice b{"/dev/sdb", std::vector<uint8_t>(17 * kChunk)};
  for (auto* d : {&a, &b}) d->mutate(rng, 12);
  std::map<GenerationId, std::map<std::string, std::vector<uint8_t>>> history;
  auto repo = open(true);
  ASSERT_TRUE(repo);
  for (int round = 0; round < 9; ++round) {
    std::vector<SimDevice*> devs = {&a};
    if (round % 3 != 1) devs.push_back(&b);  // b is missing from some generations
    // A full read where a's size changed (an incremental cannot build on
    // another size), and once more along the way.
    auto info = backup(*repo, devs, round == 4 || round == 5 || round == 7);
    ASSERT_TRUE(info) << info.error().message();
    for (auto* d : devs) history[info->id][d->name] = d->bytes;
    for (auto* d : {&a, &b}) d->mutate(rng, static_cast<int>(rng() % 4));  // sometimes nothing
    if (round == 3) {  // a grows by a partial chunk, then later shrinks
      a.bytes.resize(a.bytes.size() + kChunk / 2 + 7, 0x5A);
      a.mark(a.bytes.size() - kChunk, kChunk);
    }
    if (round == 6) {
      a.bytes.resize(a.bytes.size() - 3 * kChunk);
      a.mark(a.bytes.size() - 1, 1);
      std::erase_if(a.dirty, [&](uint64_t c) { return c * kChunk >= a.bytes.size(); });
    }
  }
  // A pruned generation in the middle: the intervals still span it.
  ASSERT_TRUE(repo->forget({3}));
  history.erase(3);

  int pairs = 0, nonempty = 0;
  for (const auto& [ga, devs_a] : history) {
    for (const auto& [gb, devs_b] : history) {
      for (const auto& [name, bytes_a] : devs_a) {
        auto it = devs_b.find(name);
        if (it == devs_b.end()) continue;
        SCOPED_TRACE(name + " " + std::to_string(ga) + " -> " + std::to_string(gb));
        auto d = repo->diff(ga, gb, name);
        ASSERT_TRUE(d) << d.error().message();
        auto ia = repo->device_image(ga, name);
        auto ib = repo->device_image(gb, name);
        ASSERT_TRUE(ia && ib);
        EXPECT_EQ(d->ranges, reference_ranges(*ia, *ib));
        EXPECT_EQ(d->from_size_bytes, bytes_a.size());
        EXPECT_EQ(d->to_size_bytes, it->second.size());
        // The changed chunks are exactly those whose bytes differ.
        auto expect = byte_changed(bytes_a, it->second);
        EXPECT_EQ(d->changed_chunks, expect.size());
        uint64_t total = 0;
        for (const auto& r : d->ranges) total += r.length_bytes;
        EXPECT_EQ(d->changed_bytes, total);
        ++pairs;
        if (!d->ranges.empty()) ++nonempty;
      }
    }
  }
  EXPECT_GT(pairs, 50);
  EXPECT_GT(nonempty, pairs / 2);
}

TEST_F(RepositoryTest, DiffOfAGenerationWithItselfIsEmptyAndOneChangeIsOneRange) {
  init();
  SimDevice a{"/dev/sda", std::vector<uint8_t>(8 * kChunk, 1)};
  auto repo = open(true);
  ASSERT_TRUE(repo);
  ASSERT_TRUE(backup(*repo, {&a}, false));
  a.bytes[3 * kChunk + 5] = 9;
  a.bytes[4 * kChunk] = 9;
  a.mark(3 * kChunk + 5, kChunk);
  ASSERT_TRUE(backup(*repo, {&a}, false));
  auto same = repo->diff(2, 2, "/dev/sda");
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->ranges.empty());
  auto d = repo->diff(1, 2, "/dev/sda");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->ranges, (Ranges{{3 * kChunk, 2 * kChunk}}));
  EXPECT_EQ(d->changed_chunks, 2u);
  auto back = repo->diff(2, 1, "/dev/sda");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->ranges, d->ranges);
}

TEST_F(RepositoryTest, DiffNamesAMissingGenerationOrDevice) {
  init();
  SimDevice a{"/dev/sda", std::vector<uint8_t>(2 * kChunk, 1)};
  auto repo = open(true);
  ASSERT_TRUE(repo);
  ASSERT_TRUE(backup(*repo, {&a}, false));
  auto none = repo->diff(1, 7, "/dev/sda");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(none.error().message(), "generation 7 does not exist");
  auto nodev = repo->diff(1, 1, "/dev/sdz");
  ASSERT_FALSE(nodev);
  EXPECT_EQ(nodev.error().message(), "generation 1 has no device /dev/sdz");
}

}  // namespace
}  // namespace blkvault::repo
