#include "common/error.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/file_io.h"

namespace blkvault {
namespace {

Status fails_with_enospc() { return fail_errno("writing pack 00ab", ENOSPC); }

Status outer() {
  BLKVAULT_TRY(fails_with_enospc());
  return {};
}

TEST(Error, WrapBuildsOneSentenceOutermostFirst) {
  Status st = outer();
  ASSERT_FALSE(st);
  Error e = std::move(st).error().wrap("backing up /dev/sdb");
  EXPECT_EQ(e.message(), "backing up /dev/sdb: writing pack 00ab: No space left on device");
  EXPECT_EQ(e.code(), ErrorCode::kNoSpace);
  EXPECT_EQ(e.sys_errno(), ENOSPC);
}

TEST(Error, ErrnoIsClassified) {
  EXPECT_EQ(Error::from_errno("x", EACCES).code(), ErrorCode::kPermission);
  EXPECT_EQ(Error::from_errno("x", ENOENT).code(), ErrorCode::kNotFound);
  EXPECT_EQ(Error::from_errno("x", EIO).code(), ErrorCode::kIo);
  EXPECT_EQ(Error::from_errno("x", EBUSY).code(), ErrorCode::kBusy);
}

Result<int> half(int x) {
  if (x % 2) return fail(ErrorCode::kInvalidArgument, "odd");
  return x / 2;
}
Result<int> quarter(int x) {
  BLKVAULT_TRY_ASSIGN(int h, half(x));
  BLKVAULT_TRY_ASSIGN(int q, half(h));
  return q;
}

TEST(Error, TryAssignPropagatesValueAndError) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "odd");
}

TEST(FileIo, HexRoundTripsAndRejectsBadDigits) {
  std::array<uint8_t, 3> in{0x00, 0xab, 0xff}, out{};
  EXPECT_EQ(to_hex(in), "00abff");
  EXPECT_TRUE(from_hex("00abff", out));
  EXPECT_EQ(in, out);
  EXPECT_FALSE(from_hex("00abfg", out));
  EXPECT_FALSE(from_hex("00ab", out));
}

TEST(FileIo, AtomicWriteReplacesAndLeavesNoTemporary) {
  char dir_template[] = "/tmp/blkvault-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string dir = dir_template, path = dir + "/file";
  ASSERT_TRUE(write_file_atomic(path, "one"));
  ASSERT_TRUE(write_file_atomic(path, "two"));
  EXPECT_EQ(*read_file(path), "two");
  int entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace blkvault
