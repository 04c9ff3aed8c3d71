#include "repo/pack.h"

#include <gtest/gtest.h>

#include "temp_dir.h"

#include <filesystem>
#include <fstream>
#include <random>

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

class PackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage_ = std::move(*LocalStorage::open(root_));
    std::mt19937_64 rng(5);
    for (auto& b : key_) b = static_cast<uint8_t>(rng());
  }

  // Writes a pack of `n` chunks of mixed compressibility; returns their plaintexts.
  std::vector<std::vector<uint8_t>> write_pack(const std::string& name, int n) {
    std::vector<std::vector<uint8_t>> chunks;
    auto w = PackWriter::create(*storage_, name);
    EXPECT_TRUE(w);
    ChunkCodec codec(3);
    std::mt19937_64 rng(n);
    for (int i = 0; i < n; ++i) {
      std::vector<uint8_t> c(4096 + i * 100);
      for (auto& b : c) b = static_cast<uint8_t>(i % 2 ? rng() : i);
      auto blob = codec.seal(chunk_id(key_, c), c);
      EXPECT_TRUE((*w)->append(chunk_id(key_, c), *blob));
      chunks.push_back(c);
    }
    EXPECT_TRUE((*w)->finish());
    return chunks;
  }

  test::TempDir tmp_;
  std::string root_ = tmp_.path();
  std::unique_ptr<LocalStorage> storage_;
  ChunkKey key_;
};

TEST_F(PackTest, TrailerListsEveryBlobAndEachOpensToItsChunk) {
  auto chunks = write_pack("packs/aa/p1", 10);
  auto entries = read_pack_index(*storage_, "packs/aa/p1");
  ASSERT_TRUE(entries) << entries.error().message();
  ASSERT_EQ(entries->size(), 10u);
  ChunkCodec codec(3);
  for (size_t i = 0; i < entries->size(); ++i) {
    const auto& e = (*entries)[i];
    auto bytes = *storage_->get_range("packs/aa/p1", e.offset, e.length);
    auto h = BlobHeader::decode(bytes, "p");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->id, e.id);
    auto raw = codec.open(*h, std::span(bytes).subspan(BlobHeader::kSize), key_, "p");
    ASSERT_TRUE(raw) << raw.error().message();
    EXPECT_EQ(*raw, chunks[i]);
  }
  EXPECT_TRUE(*scan_pack(*storage_, "packs/aa/p1") == *entries);
}

TEST_F(PackTest, TruncatedPackLosesItsTrailerButScanRecoversWholeBlobs) {
  write_pack("packs/aa/p2", 6);
  auto entries = *read_pack_index(*storage_, "packs/aa/p2");
  std::string path = root_ + "/packs/aa/p2";
  fs::resize_file(path, entries[4].offset + 10);  // cut inside blob 4
  auto r = read_pack_index(*storage_, "packs/aa/p2");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(r.error().message(), "pack packs/aa/p2: no pack trailer at its end (truncated or not a pack)");
  auto scanned = scan_pack(*storage_, "packs/aa/p2");
  ASSERT_TRUE(scanned);
  ASSERT_EQ(scanned->size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*scanned)[i].id, entries[i].id);
}

TEST_F(PackTest, DamagedTrailerEntryIsDetected) {
  write_pack("packs/aa/p3", 3);
  std::string path = root_ + "/packs/aa/p3";
  auto size = fs::file_size(path);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(size - 24 - 28 + 17));  // offset field of the last entry
  f.put('\x7f');
  f.close();
  auto r = read_pack_index(*storage_, "packs/aa/p3");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "pack packs/aa/p3: trailer entries checksum mismatch");
}

TEST_F(PackTest, UnfinishedPackIsNotVisible) {
  {
    auto w = PackWriter::create(*storage_, "packs/bb/p4");
    ASSERT_TRUE(w);
    std::vector<uint8_t> c(100, 1);
    ChunkCodec codec(3);
    ASSERT_TRUE((*w)->append(chunk_id(key_, c), *codec.seal(chunk_id(key_, c), c)));
  }
  EXPECT_FALSE(*storage_->exists("packs/bb/p4"));
  EXPECT_TRUE(storage_->list("packs/")->empty());
}

}  // namespace
}  // namespace blkvault::repo
