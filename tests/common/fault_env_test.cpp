// FaultEnv's model of a power cut (tests/fault_env.h): what survives is what
// was fsynced — file data up to its last fsync, directory entries up to their
// directory's last fsync — and nothing else.
#include <fcntl.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/file_io.h"
#include "fault_env.h"
#include "temp_dir.h"

namespace blkvault {
namespace {
namespace fs = std::filesystem;

std::span<const uint8_t> bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

class FaultEnvTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) { return dir_ / name; }
  std::string content(const std::string& name) {
    auto r = read_file(path(name));
    return r ? *r : "<missing>";
  }
  // Creates `name` holding `text` through the env, fsynced, and its directory fsynced.
  void durable_file(const std::string& name, std::string_view text) {
    auto fd = env_.open(path(name), O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT_TRUE(fd) << fd.error().message();
    ASSERT_TRUE(env_.write(fd->get(), bytes(text), name));
    ASSERT_TRUE(env_.fsync(fd->get(), name));
    ASSERT_TRUE(env_.fsync_dir(dir_.path()));
  }

  test::TempDir dir_;
  test::FaultEnv env_;
};

TEST_F(FaultEnvTest, WritesAfterTheLastFsyncAreDropped) {
  durable_file("f", "synced");
  auto fd = env_.open(path("f"), O_WRONLY, 0);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(env_.pwrite(fd->get(), bytes("SYNCED and more"), 0, "f"));
  fd->reset();
  EXPECT_EQ(content("f"), "SYNCED and more");
  const auto stats = env_.revert();
  EXPECT_EQ(content("f"), "synced");
  EXPECT_EQ(stats.files_reverted, 1u);
  EXPECT_EQ(stats.bytes_dropped, 9u);
  EXPECT_EQ(stats.entries_undone, 0u);
}

TEST_F(FaultEnvTest, AFileWhoseDirectoryWasNotFsyncedIsGoneAndOneNeverFsyncedIsEmpty) {
  auto fd = env_.open(path("new"), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(env_.write(fd->get(), bytes("data"), "new"));
  ASSERT_TRUE(env_.fsync(fd->get(), "new"));
  auto fd2 = env_.open(path("unsynced"), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd2);
  ASSERT_TRUE(env_.fsync_dir(dir_.path()));
  ASSERT_TRUE(env_.write(fd2->get(), bytes("lost"), "unsynced"));
  auto fd3 = env_.open(path("late"), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd3);
  ASSERT_TRUE(env_.fsync(fd3->get(), "late"));  // its data, not its name
  fd->reset();
  fd2->reset();
  fd3->reset();
  const auto stats = env_.revert();
  EXPECT_EQ(content("new"), "data");
  EXPECT_EQ(content("unsynced"), "");
  EXPECT_FALSE(fs::exists(path("late")));
  EXPECT_EQ(stats.entries_undone, 1u);
}

TEST_F(FaultEnvTest, LinksRenamesAndUnlinksNotDirSyncedAreUndone) {
  durable_file("a", "A");
  durable_file("old", "old");
  durable_file("gone", "keep me");
  env_.revert();  // everything so far is on disk
  ASSERT_TRUE(env_.link(path("a"), path("a2")));
  auto fd = env_.open(path("tmp"), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(env_.write(fd->get(), bytes("new"), "tmp"));
  ASSERT_TRUE(env_.fsync(fd->get(), "tmp"));
  fd->reset();
  ASSERT_TRUE(env_.rename(path("tmp"), path("old")));
  ASSERT_TRUE(env_.unlink(path("gone")));
  EXPECT_EQ(content("old"), "new");
  const auto stats = env_.revert();
  EXPECT_FALSE(fs::exists(path("a2")));
  EXPECT_FALSE(fs::exists(path("tmp")));
  EXPECT_EQ(content("old"), "old");
  EXPECT_EQ(content("gone"), "keep me");
  EXPECT_EQ(content("a"), "A");
  EXPECT_EQ(stats.entries_undone, 3u);  // a2 removed, old's first file and gone restored
}

TEST_F(FaultEnvTest, ADirSyncMakesLinksAndRenamesDurable) {
  durable_file("a", "A");
  ASSERT_TRUE(env_.link(path("a"), path("a2")));
  ASSERT_TRUE(env_.rename(path("a"), path("b")));
  ASSERT_TRUE(env_.fsync_dir(dir_.path()));
  const auto stats = env_.revert();
  EXPECT_FALSE(stats.dropped_anything());
  EXPECT_EQ(content("a2"), "A");
  EXPECT_EQ(content("b"), "A");
  EXPECT_FALSE(fs::exists(path("a")));
}

TEST_F(FaultEnvTest, ADirectoryNotSyncedInItsParentLosesEverythingInIt) {
  ASSERT_TRUE(env_.mkdir(path("d"), 0700));
  auto fd = env_.open(path("d/f"), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(env_.write(fd->get(), bytes("x"), "d/f"));
  ASSERT_TRUE(env_.fsync(fd->get(), "d/f"));
  fd->reset();
  ASSERT_TRUE(env_.fsync_dir(path("d")));  // f is durable in d, but d is not in its parent
  env_.revert();
  EXPECT_FALSE(fs::exists(path("d")));

  ASSERT_TRUE(env_.mkdir(path("d"), 0700));
  ASSERT_TRUE(env_.fsync_dir(dir_.path()));
  fd = env_.open(path("d/f"), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(env_.write(fd->get(), bytes("x"), "d/f"));
  ASSERT_TRUE(env_.fsync(fd->get(), "d/f"));
  fd->reset();
  ASSERT_TRUE(env_.fsync_dir(path("d")));
  env_.revert();
  EXPECT_EQ(content("d/f"), "x");
}

TEST_F(FaultEnvTest, TheArmedCallFailsOnceOrCutsThePowerForGood) {
  env_.fail_at(2);
  auto fd = env_.open(path("f"), O_WRONLY | O_CREAT | O_EXCL, 0600);  // call 1
  ASSERT_TRUE(fd);
  auto st = env_.write(fd->get(), bytes("x"), "f");  // call 2
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "injected failure of write f: Input/output error");
  EXPECT_EQ(st.error().sys_errno(), EIO);
  EXPECT_TRUE(env_.write(fd->get(), bytes("y"), "f"));  // call 3 works
  EXPECT_TRUE(env_.failed());
  EXPECT_FALSE(env_.power_lost());
  EXPECT_EQ(env_.calls(), 3u);
  fd->reset();
  env_.revert();

  env_.lose_power_at(2);
  fd = env_.open(path("g"), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd);
  st = env_.fsync(fd->get(), "g");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "power lost (fsync g)");
  EXPECT_FALSE(env_.fsync_dir(dir_.path()));  // and every call after it
  EXPECT_FALSE(env_.unlink(path("g")));
  EXPECT_TRUE(fs::exists(path("g"))) << "nothing reaches the disk once the power is lost";
  EXPECT_EQ(env_.calls(), 2u);
  fd->reset();
  env_.revert();
  EXPECT_FALSE(fs::exists(path("g")));
}

TEST_F(FaultEnvTest, ErrorsKeepErrnoLikeTheRealEnv) {
  durable_file("a", "A");
  auto st = env_.link(path("a"), path("a"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().sys_errno(), EEXIST);
  st = Env::real().unlink(path("missing"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().sys_errno(), ENOENT);
  EXPECT_EQ(st.error().message(), "removing " + path("missing") + ": No such file or directory");
}

}  // namespace
}  // namespace blkvault
