// snapshot::Session over the simulated module: the snapshot and its storage are
// released on every path, orphans of killed runs are cleaned up, others' are not.
#include "snapshot/session.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "kernel/sim_module.h"

namespace blkvault::snapshot {
namespace {
namespace fs = std::filesystem;

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/blkvault-session-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    disk_ = dir_ + "/disk.img";
    std::ofstream out(disk_, std::ios::binary);
    std::mt19937_64 rng(1);
    std::vector<uint64_t> buf(4 << 20 >> 3);
    for (auto& v : buf) v = rng();
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size() * 8));
    out.close();
    auto sim = kernel::SimModule::open(dir_ + "/sim", kernel::SimOptions{.diff_storage_minimum_sectors = 2048});
    ASSERT_TRUE(sim) << sim.error().message();
    sim_ = std::move(*sim);
    options_.diff_storage_dir = dir_ + "/diff";
    options_.state_dir = dir_ + "/state";
    options_.initial_bytes = 1 << 20;
    options_.limit_bytes = 8 << 20;
    options_.event_poll_ms = 5;
  }
  void TearDown() override { fs::remove_all(dir_); }

  size_t storage_files() {
    if (!fs::exists(options_.diff_storage_dir)) return 0;
    return static_cast<size_t>(std::distance(fs::directory_iterator(options_.diff_storage_dir), fs::directory_iterator()));
  }

  std::string dir_, disk_;
  std::unique_ptr<kernel::SimModule> sim_;
  SessionOptions options_;
  NullLogger log_;
};

TEST_F(SessionTest, OpenTakesOneSnapshotWithImagesAndCloseReleasesEverything) {
  auto s = Session::open(*sim_, {disk_}, options_, log_, nullptr);
  ASSERT_TRUE(s) << s.error().message();
  ASSERT_EQ((*s)->devices().size(), 1u);
  auto& dev = (*s)->devices()[0];
  EXPECT_EQ(dev.reader->size_bytes(), 4u << 20);
  EXPECT_EQ(dev.cbt.snap_number, 1);
  auto map = (*s)->read_cbt_map(dev);
  ASSERT_TRUE(map) << map.error().message();
  EXPECT_EQ(map->size(), dev.cbt.block_count);
  EXPECT_EQ(sim_->snapshots()->size(), 1u);
  EXPECT_EQ(storage_files(), 1u);
  ASSERT_TRUE((*s)->close());
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_EQ(storage_files(), 0u);
}

TEST_F(SessionTest, ImageKeepsTakeTimeDataWhileTheDeviceIsWritten) {
  auto s = Session::open(*sim_, {disk_}, options_, log_, nullptr);
  ASSERT_TRUE(s) << s.error().message();
  std::vector<uint8_t> before(65536), after(65536), patch(65536, 0xAB);
  ASSERT_TRUE((*s)->devices()[0].reader->read_at(0, before));
  ASSERT_TRUE(sim_->write(disk_, 0, patch));
  ASSERT_TRUE((*s)->devices()[0].reader->read_at(0, after));
  EXPECT_EQ(before, after);
}

TEST_F(SessionTest, DestructorReleasesOnAnExceptionPath) {
  try {
    auto s = Session::open(*sim_, {disk_}, options_, log_, nullptr);
    ASSERT_TRUE(s);
    throw std::runtime_error("caller failed mid-backup");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_EQ(storage_files(), 0u);
}

TEST_F(SessionTest, FailedOpenLeavesNoSnapshot) {
  auto s = Session::open(*sim_, {disk_, disk_}, options_, log_, nullptr);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "device " + disk_ + " is given twice");
  auto missing = Session::open(*sim_, {dir_ + "/missing.img"}, options_, log_, nullptr);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_EQ(storage_files(), 0u);
}

TEST_F(SessionTest, OrphanOfAKilledRunIsDestroyedByTheNextOpen) {
  pid_t pid = ::fork();
  if (pid == 0) {
    auto sim = kernel::SimModule::open(dir_ + "/sim");
    auto s = Session::open(**sim, {disk_}, options_, log_, nullptr);
    if (!s) _exit(3);
    ::kill(::getpid(), SIGKILL);  // die holding the snapshot
    _exit(4);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(sim_->snapshots()->size(), 1u);
  EXPECT_EQ(storage_files(), 1u);
  auto cleaned = cleanup_orphans(*sim_, options_.state_dir, log_);
  ASSERT_TRUE(cleaned) << cleaned.error().message();
  EXPECT_EQ(*cleaned, 1);
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_EQ(storage_files(), 0u);
}

CancelToken* g_child_cancel = nullptr;
extern "C" void child_on_sigterm(int sig) { g_child_cancel->request(sig); }

// The app's signal handling: SIGTERM only sets the token; the caller notices it,
// returns, and the Session's destructor releases the snapshot.
TEST_F(SessionTest, SigtermMidSessionReleasesTheSnapshot) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    CancelToken cancel;
    g_child_cancel = &cancel;
    ::signal(SIGTERM, child_on_sigterm);
    auto sim = kernel::SimModule::open(dir_ + "/sim");
    {
      auto s = Session::open(**sim, {disk_}, options_, log_, &cancel);
      if (!s) _exit(3);
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) _exit(4);
      while (!cancel.cancelled()) ::usleep(1000);
    }
    _exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_EQ(sim_->snapshots()->size(), 1u);
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_EQ(storage_files(), 0u);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_F(SessionTest, ForeignSnapshotIsNotTouchedByCleanup) {
  auto dev = sim_->device_id(disk_);
  ASSERT_TRUE(dev);
  std::vector<kernel::DevId> ids{*dev};
  auto foreign = sim_->create_snapshot(ids);
  ASSERT_TRUE(foreign);
  auto cleaned = cleanup_orphans(*sim_, options_.state_dir, log_);
  ASSERT_TRUE(cleaned);
  EXPECT_EQ(*cleaned, 0);
  EXPECT_EQ(sim_->snapshots()->size(), 1u);
  auto s = Session::open(*sim_, {disk_}, options_, log_, nullptr);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kBusy);
  EXPECT_EQ(sim_->snapshots()->size(), 1u);
}

TEST_F(SessionTest, OverflowMarksTheDeviceFailed) {
  ASSERT_TRUE(sim_->set_storage_limit(2048));  // 1 MiB of copy-on-write at most
  auto s = Session::open(*sim_, {disk_}, options_, log_, nullptr);
  ASSERT_TRUE(s) << s.error().message();
  std::vector<uint8_t> patch(4 << 20, 0x5A);
  ASSERT_TRUE(sim_->write(disk_, 0, patch));  // the original keeps working
  auto& dev = (*s)->devices()[0];
  for (int i = 0; i < 200 && !(*s)->device_failure(dev.dev); ++i) ::usleep(5000);
  auto failure = (*s)->device_failure(dev.dev);
  ASSERT_TRUE(failure);
  EXPECT_EQ(failure->sys_errno(), ENOSPC);
  std::vector<uint8_t> buf(4096);
  EXPECT_FALSE(dev.reader->read_at(0, buf));
}

}  // namespace
}  // namespace blkvault::snapshot
