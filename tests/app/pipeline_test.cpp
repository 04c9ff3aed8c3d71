#include "app/pipeline.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <mutex>
#include <random>

#include "app/output.h"

namespace blkvault::app {
namespace {

struct Collected {
  std::mutex mutex;
  std::map<uint64_t, std::vector<uint8_t>> chunks;
};

std::vector<uint8_t> make_device(size_t size, uint32_t seed) {
  std::vector<uint8_t> dev(size);
  std::mt19937 rng(seed);
  for (auto& b : dev) b = static_cast<uint8_t>(rng());
  return dev;
}

Result<PipelineResult> run_on(const std::vector<uint8_t>& dev, uint64_t chunk, std::vector<ByteExtent> extents,
                              Collected& got, CancelToken& cancel, int fail_read_at = -1) {
  boost::asio::thread_pool pool(3);
  PipelineOptions opt;
  opt.chunk_size = chunk;
  opt.device_size = dev.size();
  opt.threads = 3;
  int reads = 0;
  auto read = [&](uint64_t off, std::span<uint8_t> data) -> Status {
    if (reads++ == fail_read_at) return fail(ErrorCode::kIo, "reading image at offset " + std::to_string(off) + ": Input/output error", EIO);
    std::memcpy(data.data(), dev.data() + off, data.size());
    return {};
  };
  auto put = [&](uint64_t index, std::span<const uint8_t> data) -> Status {
    std::lock_guard lock(got.mutex);
    EXPECT_FALSE(got.chunks.count(index)) << "chunk " << index << " delivered twice";
    got.chunks[index].assign(data.begin(), data.end());
    return {};
  };
  auto r = run_pipeline(pool, opt, extents, read, put, cancel, nullptr);
  pool.join();
  return r;
}

TEST(Pipeline, DeliversEveryChunkOfTheExtentsExactlyOnceWithItsBytes) {
  const uint64_t chunk = 64 << 10;
  auto dev = make_device(40 * chunk + 1234, 7);  // partial last chunk
  std::vector<ByteExtent> ext = {{0, chunk}, {3 * chunk, 5 * chunk}, {39 * chunk, chunk + 1234}};
  Collected got;
  CancelToken cancel;
  auto r = run_on(dev, chunk, ext, got, cancel);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->bytes_read, chunk + 5 * chunk + chunk + 1234);
  std::vector<uint64_t> want = {0, 3, 4, 5, 6, 7, 39, 40};
  ASSERT_EQ(got.chunks.size(), want.size());
  for (uint64_t idx : want) {
    ASSERT_TRUE(got.chunks.count(idx)) << idx;
    uint64_t len = std::min<uint64_t>(chunk, dev.size() - idx * chunk);
    ASSERT_EQ(got.chunks[idx].size(), len);
    EXPECT_EQ(0, std::memcmp(got.chunks[idx].data(), dev.data() + idx * chunk, len)) << idx;
  }
}

TEST(Pipeline, LargeExtentSpanningManySegmentsIsComplete) {
  const uint64_t chunk = 64 << 10;
  auto dev = make_device(300 * chunk, 11);  // > 2 segments of 8 MiB
  Collected got;
  CancelToken cancel;
  auto r = run_on(dev, chunk, {{0, dev.size()}}, got, cancel);
  ASSERT_TRUE(r);
  EXPECT_EQ(got.chunks.size(), 300u);
  EXPECT_EQ(r->bytes_read, dev.size());
}

TEST(Pipeline, ReadErrorStopsAndIsReturned) {
  const uint64_t chunk = 64 << 10;
  auto dev = make_device(400 * chunk, 3);
  Collected got;
  CancelToken cancel;
  auto r = run_on(dev, chunk, {{0, dev.size()}}, got, cancel, /*fail_read_at=*/1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kIo);
  EXPECT_EQ(r.error().message(), "reading image at offset 8388608: Input/output error");
  EXPECT_LE(got.chunks.size(), 128u);  // only the first segment's chunks
}

TEST(Pipeline, CancellationStopsBeforeReading) {
  const uint64_t chunk = 64 << 10;
  auto dev = make_device(10 * chunk, 5);
  Collected got;
  CancelToken cancel;
  cancel.request(15);
  auto r = run_on(dev, chunk, {{0, dev.size()}}, got, cancel);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled);
  EXPECT_TRUE(got.chunks.empty());
}

TEST(Pipeline, RejectsUnalignedExtent) {
  const uint64_t chunk = 64 << 10;
  auto dev = make_device(10 * chunk, 5);
  Collected got;
  CancelToken cancel;
  auto r = run_on(dev, chunk, {{100, chunk}}, got, cancel);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInternal);
}

TEST(ParseSize, AcceptsBinaryUnitsAndRejectsGarbage) {
  EXPECT_EQ(*parse_size("4G"), 4ull << 30);
  EXPECT_EQ(*parse_size("512M"), 512ull << 20);
  EXPECT_EQ(*parse_size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*parse_size("65536"), 65536u);
  EXPECT_EQ(*parse_size("64k"), 65536u);
  for (const char* bad : {"", "G", "12X", "-1", "1.G", "99999999999999999999", "1.5"}) {
    auto r = parse_size(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(parse_size("12X").error().message(),
            "invalid size '12X': expected a number with an optional unit K, M, G, T (powers of 1024)");
}

TEST(FormatBytes, ReadsNaturally) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(3ull << 30), "3.0 GiB");
  EXPECT_EQ(format_duration(75), "1m15s");
}

}  // namespace
}  // namespace blkvault::app
