// Repository::restore_delta: random small changes to a target are undone by
// writing exactly the chunks they touched; holes are zeroed; with compare_only
// nothing outside the given ranges is read or written.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "repo/delta_restore.h"
#include "repo_support.h"

namespace blkvault::repo {
namespace {

// A target in memory: the sink writes into it, the source reads from it.
class MemTarget final : public RestoreSource, public RestoreSink {
 public:
  explicit MemTarget(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  Status read_at(uint64_t offset, std::span<uint8_t> data) override {
    std::lock_guard g(mu_);
    if (offset + data.size() > bytes_.size()) return fail(ErrorCode::kInternal, "read past the end");
    std::memcpy(data.data(), bytes_.data() + offset, data.size());
    read_ += data.size();
    return {};
  }
  Status write_at(uint64_t offset, std::span<const uint8_t> d) override {
    std::lock_guard g(mu_);
    if (offset + d.size() > bytes_.size()) return fail(ErrorCode::kInternal, "write past the end");
    std::memcpy(bytes_.data() + offset, d.data(), d.size());
    return {};
  }
  Status zero(uint64_t offset, uint64_t length) override {
    std::lock_guard g(mu_);
    if (offset + length > bytes_.size()) return fail(ErrorCode::kInternal, "zero past the end");
    std::memset(bytes_.data() + offset, 0, length);
    return {};
  }
  bool reads_as_zeros(uint64_t offset, uint64_t length) override {
    std::lock_guard g(mu_);
    return offset >= hole_from_ && offset + length <= hole_to_;
  }
  // [from, to) is a hole: it reads as zeros without being read.
  void make_hole(uint64_t from, uint64_t to) {
    std::memset(bytes_.data() + from, 0, to - from);
    hole_from_ = from;
    hole_to_ = to;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  std::vector<uint8_t>& bytes() { return bytes_; }
  uint64_t read() const { return read_; }

 private:
  std::mutex mu_;
  std::vector<uint8_t> bytes_;
  uint64_t read_ = 0;
  uint64_t hole_from_ = 0, hole_to_ = 0;
};

TEST_F(RepositoryTest, DeltaRestoreWritesOnlyTheChunksThatDiffer) {
  const uint64_t seed = std::getenv("BLKVAULT_TEST_SEED") ? std::stoull(std::getenv("BLKVAULT_TEST_SEED")) : 20261125;
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init();
  SimDevice a{"/dev/sda", std::vector<uint8_t>(64 * kChunk + 999)};
  a.mutate(rng, 40);
  std::memset(a.bytes.data() + 10 * kChunk, 0, 3 * kChunk);  // a hole of the image
  auto repo = open(true);
  ASSERT_TRUE(repo);
  ASSERT_TRUE(backup(*repo, {&a}, true));
  auto image = repo->device_image(1, "/dev/sda");
  ASSERT_TRUE(image);

  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    MemTarget target(a.bytes);
    std::set<uint64_t> touched;
    const int changes = 1 + static_cast<int>(rng() % 6);
    for (int c = 0; c < changes; ++c) {
      const uint64_t len = 1 + rng() % 5000;
      const uint64_t off = rng() % (a.bytes.size() - len);
      for (uint64_t i = 0; i < len; ++i) target.bytes()[off + i] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    if (round == 0) target.bytes()[11 * kChunk + 5] = 7;  // data in the hole
    for (uint64_t i = 0; i < a.bytes.size(); ++i) {
      if (target.bytes()[i] != a.bytes[i]) touched.insert(i / kChunk);
    }
    ASSERT_FALSE(touched.empty());
    auto st = repo->restore_delta(*image, target, target, DeltaOptions{.threads = 3}, nullptr, {});
    ASSERT_TRUE(st) << st.error().message();
    ASSERT_TRUE(target.bytes() == a.bytes) << "the target was not rolled back";
    EXPECT_EQ(st->bytes_compared, a.bytes.size());
    EXPECT_EQ(st->bytes_skipped, 0u);
    EXPECT_EQ(st->chunks_written, touched.size());
    uint64_t expect_data = 0, expect_zero = 0;
    for (uint64_t k : touched) {
      const uint64_t len = std::min(kChunk, a.bytes.size() - k * kChunk);
      const bool hole = std::all_of(a.bytes.begin() + k * kChunk, a.bytes.begin() + k * kChunk + len,
                                    [](uint8_t x) { return x == 0; });
      (hole ? expect_zero : expect_data) += len;
    }
    EXPECT_EQ(st->bytes_written, expect_data);
    EXPECT_EQ(st->bytes_zeroed, expect_zero);
    if (round == 0) {
      EXPECT_GE(st->bytes_zeroed, kChunk);
    }
  }

  // Nothing to do on an identical target.
  MemTarget same(a.bytes);
  auto st = repo->restore_delta(*image, same, same, DeltaOptions{}, nullptr, {});
  ASSERT_TRUE(st);
  EXPECT_EQ(st->chunks_written, 0u);
}

TEST_F(RepositoryTest, DeltaRestoreReadsNoHoleOfTheTargetAndFillsItWhereTheImageHasData) {
  init();
  std::mt19937_64 rng(31);
  SimDevice a{"/dev/sda", std::vector<uint8_t>(20 * kChunk)};
  for (auto& x : a.bytes) x = static_cast<uint8_t>(rng());
  std::memset(a.bytes.data() + 4 * kChunk, 0, 2 * kChunk);  // chunks 4, 5: a hole of the image
  auto repo = open(true);
  ASSERT_TRUE(repo);
  ASSERT_TRUE(backup(*repo, {&a}, true));
  auto image = repo->device_image(1, "/dev/sda");
  ASSERT_TRUE(image);
  MemTarget target(a.bytes);
  target.make_hole(3 * kChunk, 9 * kChunk);  // chunks 3..8: 4 and 5 are right, 3, 6, 7, 8 not
  target.bytes()[15 * kChunk] ^= 1;
  auto st = repo->restore_delta(*image, target, target, DeltaOptions{.threads = 2}, nullptr, {});
  ASSERT_TRUE(st) << st.error().message();
  ASSERT_TRUE(target.bytes() == a.bytes);
  EXPECT_EQ(target.read(), 14 * kChunk) << "the six chunks of the hole are not read";
  EXPECT_EQ(st->bytes_compared, 20 * kChunk);
  EXPECT_EQ(st->chunks_written, 5u);  // 3, 6, 7, 8 and 15
  EXPECT_EQ(st->bytes_written, 5 * kChunk);
  EXPECT_EQ(st->bytes_zeroed, 0u);
}

TEST_F(RepositoryTest, DeltaRestoreWithCompareOnlyReadsNothingElse) {
  init();
  SimDevice a{"/dev/sda", std::vector<uint8_t>(16 * kChunk, 3)};
  auto repo = open(true);
  ASSERT_TRUE(repo);
  ASSERT_TRUE(backup(*repo, {&a}, true));
  auto image = repo->device_image(1, "/dev/sda");
  ASSERT_TRUE(image);
  MemTarget target(a.bytes);
  target.bytes()[2 * kChunk] = 9;   // inside the ranges: undone
  target.bytes()[9 * kChunk] = 9;   // outside: the caller promised it is unchanged
  DeltaOptions o;
  o.compare_only = std::vector<ByteRange>{{2 * kChunk + 100, 10}, {5 * kChunk, kChunk + 1}};
  auto st = repo->restore_delta(*image, target, target, o, nullptr, {});
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(st->bytes_compared, 3 * kChunk);  // chunks 2, 5 and 6
  EXPECT_EQ(target.read(), 3 * kChunk);
  EXPECT_EQ(st->bytes_skipped, 13 * kChunk);
  EXPECT_EQ(st->bytes_written, kChunk);
  EXPECT_EQ(target.bytes()[2 * kChunk], 3);
  EXPECT_EQ(target.bytes()[9 * kChunk], 9);
}

}  // namespace
}  // namespace blkvault::repo
