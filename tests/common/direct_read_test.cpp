// DirectReads: aligned reads bypass the page cache and return the file's bytes;
// every other read, a short one at the end of the file included, is the
// buffered path's, bytes and errors alike.
#include "common/direct_read.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <optional>
#include <random>

#include "common/file_io.h"
#include "temp_dir.h"

namespace blkvault {
namespace {

std::vector<uint8_t> random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// A file of `bytes`, written, synced and dropped from the page cache.
UniqueFd make_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  auto fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  EXPECT_TRUE(fd) << fd.error().message();
  EXPECT_TRUE(pwrite_full(fd->get(), bytes, 0, path));
  EXPECT_TRUE(fsync_fd(fd->get(), path));
  (void)::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_DONTNEED);
  return std::move(*fd);
}

// Pages of the file's first `bytes` that are in the page cache.
size_t cached_pages(int fd, size_t bytes) {
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return SIZE_MAX;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((bytes + page - 1) / page);
  size_t n = SIZE_MAX;
  if (::mincore(map, bytes, vec.data()) == 0) {
    n = 0;
    for (unsigned char c : vec) n += c & 1;
  }
  ::munmap(map, bytes);
  return n;
}

class DirectReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = random_bytes(1 << 20, 7);
    fd_ = make_file(dir_ / "image", data_);
    direct_.emplace(fd_.get());
    if (!direct_->enabled()) GTEST_SKIP() << "the filesystem of " << dir_.path() << " refuses O_DIRECT";
  }
  test::TempDir dir_;
  std::vector<uint8_t> data_;
  UniqueFd fd_;
  std::optional<DirectReads> direct_;
};

TEST_F(DirectReadTest, AlignedReadBypassesThePageCache) {
  AlignedBytes buf(256 << 10);
  auto got = direct_->pread(fd_.get(), buf, 512 << 10, "image");
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(*got, buf.size());
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data_.begin() + (512 << 10)));
  EXPECT_EQ(direct_->direct_bytes(), buf.size());
  EXPECT_EQ(cached_pages(fd_.get(), data_.size()), 0u);
}

TEST_F(DirectReadTest, UnalignedReadsGoThroughTheBufferedDescriptor) {
  AlignedBytes buf(64 << 10);
  // A buffer off the alignment, an offset off it, a length off it.
  std::span<uint8_t> off_buffer(buf.data() + 512, 32 << 10);
  ASSERT_TRUE(direct_->pread(fd_.get(), off_buffer, 0, "image"));
  EXPECT_TRUE(std::equal(off_buffer.begin(), off_buffer.end(), data_.begin()));
  std::span<uint8_t> whole(buf.data(), 32 << 10);
  ASSERT_TRUE(direct_->pread(fd_.get(), whole, 1000, "image"));
  EXPECT_TRUE(std::equal(whole.begin(), whole.end(), data_.begin() + 1000));
  std::span<uint8_t> odd(buf.data(), 5000);
  ASSERT_TRUE(direct_->pread(fd_.get(), odd, 8192, "image"));
  EXPECT_TRUE(std::equal(odd.begin(), odd.end(), data_.begin() + 8192));
  EXPECT_EQ(direct_->direct_bytes(), 0u);
  EXPECT_GT(cached_pages(fd_.get(), data_.size()), 0u);
}

TEST_F(DirectReadTest, ShortReadAtTheEndIsTheBufferedPathsResult) {
  // A file whose size is not a multiple of the alignment.
  std::vector<uint8_t> tail = random_bytes(10000, 9);
  UniqueFd fd = make_file(dir_ / "short", tail);
  DirectReads direct(fd.get());
  AlignedBytes buf(3 * kDirectAlign, 0xAA);
  auto got = direct.pread(fd.get(), buf, 0, "short", /*allow_short=*/true);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(*got, tail.size());
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), buf.begin()));
  EXPECT_EQ(direct.direct_bytes(), 0u);

  auto strict = direct.pread(fd.get(), buf, 0, "short");
  ASSERT_FALSE(strict);
  EXPECT_EQ(strict.error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(strict.error().message(), "reading short at offset 10000: unexpected end of file");
}

TEST(DirectRead, AFileThatRefusesODirectIsReadBuffered) {
  // procfs has no direct I/O: the second descriptor cannot be opened.
  auto fd = open_file("/proc/self/stat", O_RDONLY);
  ASSERT_TRUE(fd);
  DirectReads direct(fd->get());
  EXPECT_FALSE(direct.enabled());
  AlignedBytes buf(kDirectAlign);
  auto got = direct.pread(fd->get(), buf, 0, "stat", /*allow_short=*/true);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_GT(*got, 0u);
  EXPECT_EQ(std::to_string(::getpid()), std::string(reinterpret_cast<char*>(buf.data()),
                                                    std::to_string(::getpid()).size()));
}

}  // namespace
}  // namespace blkvault
