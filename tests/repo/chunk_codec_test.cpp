#include "repo/chunk_codec.h"

#include <gtest/gtest.h>

#include <random>

namespace blkvault::repo {
namespace {

ChunkKey make_key(uint64_t seed) {
  ChunkKey k;
  std::mt19937_64 rng(seed);
  for (auto& b : k) b = static_cast<uint8_t>(rng());
  return k;
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST(ChunkId, DependsOnTheRepositoryKey) {
  auto data = random_bytes(65536, 1);
  EXPECT_EQ(chunk_id(make_key(1), data), chunk_id(make_key(1), data));
  EXPECT_NE(chunk_id(make_key(1), data), chunk_id(make_key(2), data));
  data[100] ^= 1;
  EXPECT_NE(chunk_id(make_key(1), data), chunk_id(make_key(1), random_bytes(65536, 1)));
}

TEST(ChunkId, ZeroDetectionSeesASingleByte) {
  std::vector<uint8_t> z(65536 + 3, 0);
  EXPECT_TRUE(is_all_zero(z));
  z.back() = 1;
  EXPECT_FALSE(is_all_zero(z));
  z.back() = 0;
  z[9] = 0x80;
  EXPECT_FALSE(is_all_zero(z));
}

TEST(ChunkCodec, CompressibleDataIsStoredCompressedAndRoundTrips) {
  auto key = make_key(3);
  std::vector<uint8_t> data(1 << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>("blkvault"[i % 8]);
  ChunkCodec codec(3);
  auto id = chunk_id(key, data);
  auto blob = codec.seal(id, data);
  ASSERT_TRUE(blob);
  auto h = BlobHeader::decode(*blob, "pack p offset 0");
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ(h->compression, Compression::kZstd);
  EXPECT_LT(h->stored_size, data.size() / 10);
  auto raw = codec.open(*h, std::span(*blob).subspan(BlobHeader::kSize), key, "pack p offset 0");
  ASSERT_TRUE(raw) << raw.error().message();
  EXPECT_EQ(*raw, data);
}

TEST(ChunkCodec, IncompressibleDataIsStoredRaw) {
  auto key = make_key(3);
  auto data = random_bytes(65536, 9);
  ChunkCodec codec(3);
  auto blob = codec.seal(chunk_id(key, data), data);
  ASSERT_TRUE(blob);
  auto h = BlobHeader::decode(*blob, "p");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->compression, Compression::kNone);
  EXPECT_EQ(blob->size(), BlobHeader::kSize + data.size());
}

TEST(ChunkCodec, EveryFlippedByteIsDetected) {
  auto key = make_key(4);
  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i / 64);
  ChunkCodec codec(3);
  auto blob = *codec.seal(chunk_id(key, data), data);
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    auto damaged = blob;
    damaged[pos] ^= 0x10;
    auto h = BlobHeader::decode(damaged, "pack p");
    if (!h) {
      EXPECT_TRUE(h.error().code() == ErrorCode::kCorrupt || h.error().code() == ErrorCode::kUnsupported) << pos;
      continue;
    }
    auto raw = codec.open(*h, std::span(damaged).subspan(BlobHeader::kSize), key, "pack p");
    ASSERT_FALSE(raw) << "flip at byte " << pos << " went unnoticed";
    EXPECT_EQ(raw.error().code(), ErrorCode::kCorrupt);
  }
}

TEST(BlobHeader, NamesWhereItIsDamaged) {
  BlobHeader h;
  h.raw_size = h.stored_size = 5;
  auto b = h.encode();
  b[41] ^= 1;
  auto r = BlobHeader::decode(b, "pack 3f2a offset 4096");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "pack 3f2a offset 4096: blob header checksum mismatch");
}

}  // namespace
}  // namespace blkvault::repo
