// MountReader (what `blkvault mount` serves reads from) against a real
// repository: bytes equal to the image, each chunk loaded once by a sequential
// scan, no read-ahead for random reads, single-flight loads, and the cache
// bound. Randomized parts take BLKVAULT_TEST_SEED or draw one and print it.
#include "app/mount_reader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <set>
#include <random>
#include <thread>

#include "repo/repo_support.h"

namespace blkvault::app {
namespace {

using repo::kChunk;

uint64_t test_seed() {
  if (const char* s = std::getenv("BLKVAULT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

class MountReaderTest : public repo::RepositoryTest {
 protected:
  static constexpr uint64_t kChunks = 24;

  void SetUp() override {
    init();
    repo_ = open(/*write=*/true);
    ASSERT_NE(repo_, nullptr);
    dev_.name = "/dev/sdb";
    dev_.bytes.resize(kChunks * kChunk);
    std::mt19937_64 rng(1);
    for (auto& b : dev_.bytes) b = static_cast<uint8_t>(rng());
    auto g = backup(*repo_, {&dev_}, /*full=*/true);
    ASSERT_TRUE(g) << g.error().message();
    auto img = repo_->device_image(g->id, dev_.name);
    ASSERT_TRUE(img) << img.error().message();
    image_ = std::move(*img);
    ASSERT_EQ(image_.chunks.size(), kChunks);
  }

  // Reads [offset, offset+len) through `r` and checks the bytes.
  void read_ok(MountReader& r, uint64_t offset, uint64_t len) {
    std::vector<uint8_t> buf(len);
    auto n = r.read(image_, offset, buf);
    ASSERT_TRUE(n) << n.error().message();
    ASSERT_EQ(*n, len);
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), dev_.bytes.begin() + static_cast<std::ptrdiff_t>(offset)))
        << "bytes " << offset << ".." << offset + len << " differ";
  }

  std::unique_ptr<repo::Repository> repo_;
  repo::SimDevice dev_;
  repo::DeviceImage image_;
};

TEST_F(MountReaderTest, ASequentialScanLoadsEachChunkOnceAndReadsAhead) {
  MountReader r(*repo_, 64ull << 20);
  for (uint64_t off = 0; off < dev_.bytes.size(); off += 4096) read_ok(r, off, 4096);
  const auto s = r.stats();
  EXPECT_EQ(s.chunks_loaded, kChunks);
  EXPECT_GT(s.read_ahead_queued, 0u);
  EXPECT_LE(s.read_ahead_queued, kChunks);
}

TEST_F(MountReaderTest, RandomReadsTriggerNoReadAhead) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::vector<uint64_t> order(kChunks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  MountReader r(*repo_, 64ull << 20);
  // 4 KiB reads inside distinct chunks, none starting where another ended.
  for (size_t i = 0; i < 12; ++i) read_ok(r, order[i] * kChunk + 8192, 4096);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a stray read-ahead would have run by now
  const auto s = r.stats();
  EXPECT_EQ(s.read_ahead_queued, 0u);
  EXPECT_EQ(s.chunks_loaded, 12u);
  // Reading on from where an earlier read ended is sequential: in a chunk
  // whose next one is not cached yet, so there is something to read ahead.
  const std::set<uint64_t> read_chunks(order.begin(), order.begin() + 12);
  uint64_t c = 0;
  while (c + 1 < kChunks && read_chunks.count(c + 1) != 0) ++c;
  ASSERT_LT(c + 1, kChunks);
  read_ok(r, c * kChunk + 40000, 4096);
  read_ok(r, c * kChunk + 44096, 4096);
  EXPECT_GT(r.stats().read_ahead_queued, 0u);
}

TEST_F(MountReaderTest, TwoConcurrentReadersOfOneChunkLoadItOnce) {
  std::atomic<int> hook_calls{0};
  std::atomic<bool> first_entered{false};
  MountReader r(*repo_, 64ull << 20, [&](const repo::ChunkRef&) {
    if (hook_calls++ == 0) {
      first_entered = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the second reader arrives meanwhile
    }
  });
  std::thread a([&] { read_ok(r, 5 * kChunk + 100, 4096); });
  while (!first_entered) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread b([&] { read_ok(r, 5 * kChunk + 20000, 4096); });
  a.join();
  b.join();
  EXPECT_EQ(hook_calls.load(), 1);
  EXPECT_EQ(r.stats().chunks_loaded, 1u);
}

TEST_F(MountReaderTest, TheCacheStaysWithinItsBound) {
  const uint64_t limit = 5 * kChunk;
  MountReader r(*repo_, limit);
  EXPECT_EQ(r.stats().cache_limit_bytes, limit);
  for (uint64_t off = 0; off < dev_.bytes.size(); off += 32768) read_ok(r, off, 32768);
  auto s = r.stats();
  EXPECT_LE(s.peak_cached_bytes, limit);
  EXPECT_EQ(s.peak_cached_bytes, limit);  // it did fill up
  // The first chunk was evicted long ago: reading it again loads it again.
  // (Once the read-ahead of the scan's last chunks has settled.)
  uint64_t before = s.chunks_loaded;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const uint64_t now = r.stats().chunks_loaded;
    if (now == before) break;
    before = now;
  }
  read_ok(r, 0, 4096);
  EXPECT_EQ(r.stats().chunks_loaded, before + 1);
  // A bound below four chunks is raised to four.
  MountReader tiny(*repo_, 1);
  EXPECT_EQ(tiny.stats().cache_limit_bytes, MountReader::kMinCacheChunks * kChunk);
}

TEST_F(MountReaderTest, ManyReadersOfRandomRangesGetTheRightBytes) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  MountReader r(*repo_, 6 * kChunk);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(seed + static_cast<uint64_t>(t));
      for (int i = 0; i < 200; ++i) {
        const uint64_t off = rng() % dev_.bytes.size();
        const uint64_t len = 1 + rng() % std::min<uint64_t>(3 * kChunk, dev_.bytes.size() - off);
        read_ok(r, off, len);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_LE(r.stats().peak_cached_bytes, 6 * kChunk);
}

}  // namespace
}  // namespace blkvault::app
