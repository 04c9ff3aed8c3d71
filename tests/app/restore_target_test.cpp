// RestoreTarget's safety rules on files (block-device rules need root and a
// loop device; they are exercised by the end-to-end restore tests).
#include "app/restore_target.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "app/cli_support.h"

namespace blkvault::app {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(RestoreTarget, NewFileIsSizedSparseAndOwnerOnly) {
  TempDir dir;
  std::string path = dir / "out.img";
  auto t = RestoreTarget::open(path, 1 << 20, false);
  ASSERT_TRUE(t) << t.error().message();
  ASSERT_TRUE(t->write_at(4096, bytes("data")));
  ASSERT_TRUE(t->zero(0, 4096));
  ASSERT_TRUE(t->commit());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "holes stay unallocated";
  std::string content = test::read_whole(path);
  EXPECT_EQ(content.substr(4096, 4), "data");
  EXPECT_EQ(content.substr(0, 4096), std::string(4096, '\0'));
}

TEST(RestoreTarget, AbandonedNewFileIsRemoved) {
  TempDir dir;
  std::string path = dir / "out.img";
  {
    auto t = RestoreTarget::open(path, 1 << 20, false);
    ASSERT_TRUE(t);
    ASSERT_TRUE(t->write_at(0, bytes("half")));
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(RestoreTarget, NonEmptyFileNeedsForceAndIsThenRewrittenExactly) {
  TempDir dir;
  std::string path = dir / "old.img";
  test::write_random_file(path, 3 << 20, 7);
  auto refused = RestoreTarget::open(path, 1 << 20, false);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused.error().message(), "restore target " + path + " is not empty; add --force to overwrite it");
  auto t = RestoreTarget::open(path, 1 << 20, true);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->zero(0, 1 << 20));  // must really clear the old bytes
  ASSERT_TRUE(t->write_at(10, bytes("x")));
  ASSERT_TRUE(t->commit());
  std::string content = test::read_whole(path);
  ASSERT_EQ(content.size(), 1u << 20);
  std::string want(1 << 20, '\0');
  want[10] = 'x';
  EXPECT_EQ(content, want);
  EXPECT_TRUE(fs::exists(path)) << "an existing target is never deleted";
}

TEST(RestoreTarget, RefusesSymlinksDirectoriesAndCharacterDevices) {
  TempDir dir;
  fs::create_symlink(dir / "elsewhere", dir / "link");
  auto link = RestoreTarget::open(dir / "link", 4096, true);
  ASSERT_FALSE(link);
  EXPECT_EQ(link.error().message(), "restore target " + (dir / "link") + " is a symbolic link; give the real path");
  auto d = RestoreTarget::open(dir.path(), 4096, true);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().message(), "restore target " + dir.path() + " is neither a regular file nor a block device");
  auto chr = RestoreTarget::open("/dev/null", 4096, true);
  ASSERT_FALSE(chr);
  EXPECT_EQ(chr.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir / "elsewhere"));
}

TEST(RestoreTarget, MissingParentDirectoryIsNotFound) {
  TempDir dir;
  auto t = RestoreTarget::open(dir / "no/such/out.img", 4096, false);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(t.error().message(), "creating restore target: opening " + (dir / "no/such/out.img") +
                                     ": No such file or directory");
}

}  // namespace
}  // namespace blkvault::app
