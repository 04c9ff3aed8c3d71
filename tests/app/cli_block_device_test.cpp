// Backup and restore with real block devices (loop devices over files): a loop
// device backed up through the simulated module and restored byte-identical;
// restore onto a block device (needs --force when it holds data, refused while
// mounted). Root and loop support are required; otherwise skipped with the reason.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "app/backup_support.h"
#include "app/subprocess.h"
#include "kernel/loop_device_support.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kSize = 8 << 20;

class BlockDeviceCliTest : public BackupCliTest {
 protected:
  // A loop device over a new file of `size` bytes of random data (or zeros).
  std::string attach(const std::string& name, uint64_t size, bool zeros) {
    const std::string backing = dir_ / (name + ".backing");
    if (zeros) {
      std::ofstream(backing).close();
      std::filesystem::resize_file(backing, size);
    } else {
      write_random_file(backing, size, std::hash<std::string>{}(name));
    }
    const std::string node = dir_ / name;
    loops_.emplace_back();
    why_not_ = loops_.back().attach(backing, node);
    return node;
  }

  std::vector<kernel::LoopDevice> loops_;
  std::string why_not_;
};

TEST_F(BlockDeviceCliTest, LoopDeviceBackedUpIncrementallyAndRestoredByteIdentical) {
  if (::geteuid() != 0) GTEST_SKIP() << "loop devices need root";
  const std::string dev = attach("loop-a", kSize, false);
  if (!why_not_.empty()) GTEST_SKIP() << "no loop device: " << why_not_;
  init_repo();
  auto first = backup_ok({dev});
  EXPECT_EQ(first["devices"][0]["name"], dev);
  EXPECT_EQ(first["devices"][0]["size_bytes"], kSize);
  const std::string v1 = read_whole(dev);

  sim_write(dev, 3 * kChunk + 1, "through the tracked path of a block device");
  auto second = backup_ok({dev});
  EXPECT_EQ(second["devices"][0]["mode"], "incremental");
  EXPECT_EQ(second["devices"][0]["read_bytes"], kChunk);
  EXPECT_TRUE(restore_bytes("1", dev) == v1);
  EXPECT_TRUE(restore_bytes("2", dev) == read_whole(dev));
}

TEST_F(BlockDeviceCliTest, RestoreOntoABlockDeviceNeedsForceWhenItHoldsData) {
  if (::geteuid() != 0) GTEST_SKIP() << "loop devices need root";
  const std::string target = attach("loop-target", kSize + (1 << 20), false);
  if (!why_not_.empty()) GTEST_SKIP() << "no loop device: " << why_not_;
  init_repo();
  const std::string a = make_device("a.img", kSize, 21);
  backup_ok({a});

  auto r = bv({"restore", "--device", a, "--to", target});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: restore target " + target + " is not empty; add --force to overwrite it\n");
  r = bv({"-q", "restore", "--device", a, "--to", target, "--force"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_TRUE(read_whole(target).substr(0, kSize) == read_whole(a)) << "device content differs";

  const std::string small = attach("loop-small", kSize / 2, true);
  ASSERT_EQ(why_not_, "");
  r = bv({"restore", "--device", a, "--to", small});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: restore target " + small + " is too small: " + std::to_string(kSize / 2) +
                       " bytes, the image needs " + std::to_string(kSize) + " bytes\n");
}

TEST_F(BlockDeviceCliTest, RestoreRefusesAMountedDevice) {
  if (::geteuid() != 0) GTEST_SKIP() << "loop devices and mounts need root";
  if (!app::program_available("mkfs.ext4") && !app::program_available("/usr/sbin/mkfs.ext4")) {
    GTEST_SKIP() << "mkfs.ext4 is not installed";
  }
  const std::string target = attach("loop-mounted", kSize, true);
  if (!why_not_.empty()) GTEST_SKIP() << "no loop device: " << why_not_;
  ASSERT_EQ(app::run_process({"/usr/sbin/mkfs.ext4", "-q", "-F", target}, false, true)->exit_status, 0);
  const std::string mnt = dir_ / "mnt";
  std::filesystem::create_directories(mnt);
  if (::mount(target.c_str(), mnt.c_str(), "ext4", 0, nullptr) != 0) {
    GTEST_SKIP() << "cannot mount here: " << std::strerror(errno);
  }
  init_repo();
  const std::string a = make_device("a.img", kSize, 22);
  backup_ok({a});
  auto r = bv({"restore", "--device", a, "--to", target, "--force"});
  ::umount(mnt.c_str());
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.err, "blkvault: restore target " + target + " is mounted on " + mnt + "; unmount it first\n");
}

}  // namespace
}  // namespace blkvault::test
