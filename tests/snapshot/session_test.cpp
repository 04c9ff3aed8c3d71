// snapshot::Session over the simulated module: the snapshot and its storage are
// released on every path, orphans of killed runs are cleaned up, others' are not.
#include "snapshot/session.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "kernel/loop_device_support.h"
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

// Keeps every message, for tests that check what the session reported.
class RecordingLogger final : public Logger {
 public:
  void log(LogLevel level, std::string_view message) override {
    std::lock_guard lock(mutex_);
    if (level >= LogLevel::kWarning) messages_.emplace_back(message);
  }
  std::vector<std::string> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
};

// Polls `done` for up to 5 s.
template <class F>
bool eventually(F&& done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

uint64_t diff_dir_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) total += fs::file_size(e.path());
  return total;
}

// With diff_storage_minimum = 1 MiB the module asks for 1 MiB more each time only
// 512 KiB of unfilled requested space is left (SEMANTICS.md §4); copy-on-write uses
// 256 KiB chunks. A 3 MiB limit allows the first file and two answers; the third
// request is refused, and the snapshot overflows once the 3 MiB are used.
TEST_F(SessionTest, DiffStorageGrowsOnEachLowSpaceEventButNeverPastTheLimit) {
  options_.limit_bytes = 3 << 20;
  RecordingLogger log;
  auto s = Session::open(*sim_, {disk_}, options_, log, nullptr);
  ASSERT_TRUE(s) << s.error().message();
  auto& dev = (*s)->devices()[0];
  EXPECT_EQ((*s)->storage_bytes(), 1u << 20);
  std::vector<uint8_t> at_take(4 << 20);
  ASSERT_TRUE(dev.reader->read_at(0, at_take));

  const std::vector<uint8_t> patch(512, 0xC3);
  auto write_chunks = [&](int first, int last) {  // one sector in each 256 KiB chunk
    for (int c = first; c <= last; ++c) ASSERT_TRUE(sim_->write(disk_, uint64_t(c) << 18, patch));
  };
  auto snapshot_view = [&]() { return sim_->inspect().value().snapshots.at(0); };

  // In sectors: each chunk fills 512; an event comes when requested - filled <= 1024.
  write_chunks(0, 1);  // filled 1024 of 2048 requested: event 1 (requested 4096)
  ASSERT_TRUE(eventually([&] { return (*s)->storage_bytes() == 2u << 20; })) << (*s)->storage_bytes();
  write_chunks(2, 5);  // filled 3072 of 4096: event 2 (requested 6144)
  ASSERT_TRUE(eventually([&] { return (*s)->storage_bytes() == 3u << 20; })) << (*s)->storage_bytes();
  write_chunks(6, 9);  // filled 5120 of 6144: event 3, refused (4 MiB > the limit)
  ASSERT_TRUE(eventually([&] { return snapshot_view().pending_events == 0 && !log.messages().empty(); }));
  EXPECT_EQ((*s)->storage_bytes(), 3u << 20);
  EXPECT_EQ(log.messages(),
            std::vector<std::string>{"difference storage would exceed its limit of 3145728 bytes; not growing it (the "
                                     "snapshot may overflow if writes continue)"});
  auto v = snapshot_view();
  EXPECT_EQ(v.capacity_sectors, 6144u);
  EXPECT_EQ(v.requested_sectors, 4u * 2048);
  EXPECT_EQ(v.filled_sectors, 10u * 512);
  EXPECT_FALSE(v.overflow);
  EXPECT_EQ(storage_files(), 3u);
  EXPECT_LE(diff_dir_bytes(options_.diff_storage_dir), options_.limit_bytes);
  EXPECT_FALSE((*s)->device_failure(dev.dev));
  std::vector<uint8_t> image(4 << 20);
  ASSERT_TRUE(dev.reader->read_at(0, image));
  EXPECT_TRUE(image == at_take) << "ten chunks copied on write, the image still shows take time";

  write_chunks(10, 12);  // chunks 10 and 11 fill the 3 MiB; chunk 12 overflows
  ASSERT_TRUE(eventually([&] { return (*s)->device_failure(dev.dev).has_value(); }));
  EXPECT_EQ((*s)->device_failure(dev.dev)->sys_errno(), ENOSPC);
  EXPECT_TRUE(snapshot_view().overflow);
  EXPECT_EQ((*s)->storage_bytes(), 3u << 20);
  EXPECT_LE(diff_dir_bytes(options_.diff_storage_dir), options_.limit_bytes);
  ASSERT_TRUE((*s)->close());
  EXPECT_EQ(storage_files(), 0u);
}

// A whole device given over to difference storage (the simulation's stand-in
// for a spare disk is a file): it is handed to the module in slices from sector
// 0, as the module asks, until it is full; no storage file is created.
TEST_F(SessionTest, RawStorageDeviceIsHandedOverInSlicesUntilFull) {
  const std::string spare = dir_ + "/spare.img";
  {
    std::ofstream out(spare, std::ios::binary);
    out.write(std::string(3 << 20, '\0').data(), 3 << 20);  // 3 MiB "disk", zeroed
  }
  options_.diff_storage_device = spare;
  RecordingLogger log;
  auto s = Session::open(*sim_, {disk_}, options_, log, nullptr);
  ASSERT_TRUE(s) << s.error().message();
  auto& dev = (*s)->devices()[0];
  EXPECT_EQ((*s)->storage_bytes(), 1u << 20);
  EXPECT_FALSE(fs::exists(options_.diff_storage_dir)) << "device mode creates no storage directory";
  std::vector<uint8_t> at_take(4 << 20);
  ASSERT_TRUE(dev.reader->read_at(0, at_take));
  auto snapshot_view = [&]() { return sim_->inspect().value().snapshots.at(0); };

  const std::vector<uint8_t> patch(512, 0xC3);
  auto write_chunks = [&](int first, int last) {  // one sector in each 256 KiB chunk
    for (int c = first; c <= last; ++c) ASSERT_TRUE(sim_->write(disk_, uint64_t(c) << 18, patch));
  };
  write_chunks(0, 1);  // the first low-space event: a second 1 MiB slice
  ASSERT_TRUE(eventually([&] { return (*s)->storage_bytes() == 2u << 20; })) << (*s)->storage_bytes();
  write_chunks(2, 5);  // the second: the last 1 MiB of the device
  ASSERT_TRUE(eventually([&] { return (*s)->storage_bytes() == 3u << 20; })) << (*s)->storage_bytes();
  write_chunks(6, 9);  // the third cannot be answered: the device is full
  ASSERT_TRUE(eventually([&] { return snapshot_view().pending_events == 0 && !log.messages().empty(); }));
  EXPECT_EQ(log.messages(), std::vector<std::string>{"difference storage device " + spare +
                                                     " is full (3145728 bytes handed to the snapshot)"});
  EXPECT_EQ(snapshot_view().capacity_sectors, 6144u);
  std::vector<uint8_t> image(4 << 20);
  ASSERT_TRUE(dev.reader->read_at(0, image));
  EXPECT_TRUE(image == at_take) << "the copies on the storage device keep the take-time data";
  // The copied chunks went to the device: its first bytes are no longer zero.
  std::ifstream in(spare, std::ios::binary);
  std::vector<char> head(1 << 18);
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  EXPECT_NE(std::count(head.begin(), head.end(), '\0'), static_cast<std::ptrdiff_t>(head.size()));
  ASSERT_TRUE((*s)->close());
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_TRUE(fs::exists(spare)) << "a storage device is never deleted";
}

TEST_F(SessionTest, RawStorageDeviceMustNotBeADeviceBeingBackedUpOrMissing) {
  options_.diff_storage_device = disk_;
  auto s = Session::open(*sim_, {disk_}, options_, log_, nullptr);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "difference storage device " + disk_ +
                                     " is being backed up; give another device or a directory");
  options_.diff_storage_device = dir_ + "/missing.img";
  auto missing = Session::open(*sim_, {disk_}, options_, log_, nullptr);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message(), "difference storage device " + dir_ + "/missing.img: no such device");
  options_.diff_storage_device = dir_;
  auto directory = Session::open(*sim_, {disk_}, options_, log_, nullptr);
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().message(), "difference storage device " + dir_ +
                                             ": not a block device (difference storage is a directory or a whole "
                                             "block device)");
  EXPECT_TRUE(sim_->snapshots()->empty());
}

// The same session on a real block device: a loop device over the image.
TEST_F(SessionTest, LoopDeviceSessionKeepsTakeTimeDataAndItsChangesShowInTheNextMap) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to set up a loop device";
  kernel::LoopDevice loop;
  const std::string node = dir_ + "/loopdev";
  std::string why = loop.attach(disk_, node);
  if (!why.empty()) GTEST_SKIP() << "no loop device: " << why;
  struct stat st {};
  ASSERT_EQ(::stat(node.c_str(), &st), 0);
  ASSERT_TRUE(S_ISBLK(st.st_mode));

  std::vector<uint8_t> at_take(4 << 20);
  {
    auto s = Session::open(*sim_, {node}, options_, log_, nullptr);
    ASSERT_TRUE(s) << s.error().message();
    auto& dev = (*s)->devices()[0];
    EXPECT_EQ(dev.dev, (kernel::DevId{::major(st.st_rdev), ::minor(st.st_rdev)}));
    EXPECT_EQ(dev.reader->size_bytes(), 4u << 20);
    EXPECT_EQ(dev.cbt.snap_number, 1);
    ASSERT_TRUE(dev.reader->read_at(0, at_take));
    // A write through the simulated filter, to the block device.
    ASSERT_TRUE(sim_->write(node, 5 * 65536 + 512, std::vector<uint8_t>(4096, 0x11)));
    std::vector<uint8_t> image(4 << 20);
    ASSERT_TRUE(dev.reader->read_at(0, image));
    EXPECT_TRUE(image == at_take);
    ASSERT_TRUE((*s)->close());
  }
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_EQ(storage_files(), 0u);

  // A write behind the simulation's back, straight to the loop device.
  {
    int fd = ::open(node.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> junk(512, 0x22);
    ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), 60 * 65536), 512);
    ASSERT_EQ(::fsync(fd), 0);
    ::close(fd);
  }
  auto s = Session::open(*sim_, {node}, options_, log_, nullptr);
  ASSERT_TRUE(s) << s.error().message();
  auto& dev = (*s)->devices()[0];
  EXPECT_EQ(dev.cbt.snap_number, 2);
  auto map = (*s)->read_cbt_map(dev);
  ASSERT_TRUE(map) << map.error().message();
  std::vector<uint32_t> changed;
  for (uint32_t b = 0; b < map->size(); ++b)
    if ((*map)[b] > 1) changed.push_back(b);
  EXPECT_EQ(changed, (std::vector<uint32_t>{5, 60}));
  ASSERT_TRUE((*s)->close());
}

// Diff storage written by the module below a filesystem on a device of the same
// snapshot would copy-on-write into itself: refused before anything is created.
TEST_F(SessionTest, DiffStorageOnADeviceBeingBackedUpIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to set up and mount a loop device";
  kernel::LoopDevice loop;
  const std::string node = dir_ + "/loopdev";
  std::string why = loop.attach(disk_, node);
  if (!why.empty()) GTEST_SKIP() << "no loop device: " << why;
  if (std::system(("mkfs.ext4 -q -F " + node + " >/dev/null 2>&1").c_str()) != 0) GTEST_SKIP() << "mkfs.ext4 failed";
  const std::string mnt = dir_ + "/mnt";
  fs::create_directories(mnt);
  if (::mount(node.c_str(), mnt.c_str(), "ext4", 0, nullptr) != 0) {
    GTEST_SKIP() << "cannot mount the loop device: " << std::strerror(errno);
  }
  struct Unmount {
    std::string at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{mnt};
  options_.diff_storage_dir = mnt + "/diff";
  auto s = Session::open(*sim_, {node}, options_, log_, nullptr);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.error().message(), "difference storage directory " + mnt + "/diff is on " + node +
                                     ", a device being backed up; choose another filesystem with --diff-storage");
  EXPECT_TRUE(sim_->snapshots()->empty());
  EXPECT_TRUE(sim_->tracked_devices()->empty()) << "refused before create: no tracker started";
  EXPECT_EQ(storage_files(), 0u);
}

}  // namespace
}  // namespace blkvault::snapshot
