// The simulated module under stress: a writer killed mid-way, concurrent threads,
// and real block devices (loop devices, when root).
#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "loop_device_support.h"
#include "sim_fixture.h"

namespace blkvault::kernel {
namespace {

constexpr uint64_t kDev = 4 << 20;
constexpr uint64_t kBlock = 65536;

TEST_F(SimKernelTest, WriterKilledMidWayLeavesAValidStateAndNeverMixedImageData) {
  uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d}, 8 << 20);
  std::vector<uint8_t> at_take = file_bytes(p);
  for (int attempt = 0; attempt < 3; ++attempt) {
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto other = SimModule::open(state_dir());
      if (!other) ::_exit(2);
      std::mt19937_64 rng(seed + static_cast<uint64_t>(attempt));
      for (;;) {
        uint64_t len = 1 + rng() % (200 << 10);
        uint64_t off = rng() % (kDev - len);
        std::vector<uint8_t> data(len, static_cast<uint8_t>(rng()));
        if (!(*other)->write(p, off, data)) ::_exit(3);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + 20 * attempt));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  }
  // A fresh instance reads the state; the image is the take-time contents or fails.
  sim_ = open_sim();
  ASSERT_NE(sim_, nullptr);
  auto img = read_image(image_of(id, d));
  if (img) {
    EXPECT_TRUE(*img == at_take);
  } else {
    EXPECT_EQ(img.error().sys_errno(), EIO) << img.error().message();
  }
  // Whatever the kill interrupted, the next take reports every changed block.
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  std::vector<uint8_t> now = file_bytes(p);
  id = take_new({d});
  std::vector<uint8_t> map = cbt_map(d);
  for (uint64_t b = 0; b < kDev / kBlock; ++b) {
    bool changed = !std::equal(now.begin() + b * kBlock, now.begin() + (b + 1) * kBlock, at_take.begin() + b * kBlock);
    if (changed) {
      EXPECT_EQ(map[b], 2) << "block " << b;
    }
  }
}

TEST_F(SimKernelTest, ThreadsReadImagesWhileAnotherThreadWrites) {
  std::string p = make_device("a.img", kDev);
  DevId d = dev(p);
  Uuid id = take_new({d}, 8 << 20);
  std::vector<uint8_t> at_take = file_bytes(p);
  auto reader = sim_->open_image(image_of(id, d));
  ASSERT_TRUE(reader.has_value());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread writer([&] {
    std::mt19937_64 rng(1);
    for (int i = 0; i < 80; ++i) {
      uint64_t off = rng() % (kDev - 4096);
      if (!sim_->write(p, off, std::vector<uint8_t>(4096, static_cast<uint8_t>(i)))) ++bad;
    }
    stop = true;
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::vector<uint8_t> buf(256 << 10);
      uint64_t off = uint64_t(t) * buf.size();
      while (!stop) {
        if (!(*reader)->read_at(off, buf) ||
            !std::equal(buf.begin(), buf.end(), at_take.begin() + static_cast<ptrdiff_t>(off)))
          ++bad;
        off = (off + 3 * buf.size()) % kDev;
      }
    });
  }
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(SimKernelTest, BlockDevicesUseTheirDevIdAndAreAlwaysRescanned) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to set up a loop device";
  std::string backing = make_device("backing.img", kDev);
  std::string node = path("loopdev");
  LoopDevice loop;
  std::string why = loop.attach(backing, node);
  if (!why.empty()) GTEST_SKIP() << "no loop device: " << why;
  struct stat st {};
  ASSERT_EQ(::stat(node.c_str(), &st), 0);
  DevId d = dev(node);
  EXPECT_EQ(d, (DevId{::major(st.st_rdev), ::minor(st.st_rdev)}));
  Uuid id = take_new({d});
  EXPECT_EQ(sim_->fingerprint_bytes_read(), kDev);
  EXPECT_EQ(info(d).capacity_bytes, kDev);
  std::vector<uint8_t> at_take = file_bytes(node);
  ASSERT_TRUE(sim_->write(node, 2 * kBlock, std::vector<uint8_t>(100, 0xcd)).has_value());
  auto img = read_image(image_of(id, d));
  ASSERT_TRUE(img.has_value()) << img.error().message();
  EXPECT_TRUE(*img == at_take);
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
  outside_write(node, 40 * kBlock, {1, 2, 3});
  id = take_new({d});
  // Always a full rescan (no stamp shortcut for block devices), plus the block the
  // simulated write re-fingerprinted.
  EXPECT_EQ(sim_->fingerprint_bytes_read(), 2 * kDev + kBlock);
  std::vector<uint8_t> map = cbt_map(d);
  std::set<uint32_t> changed;
  for (uint32_t b = 0; b < map.size(); ++b)
    if (map[b] > 1) changed.insert(b);
  EXPECT_EQ(changed, (std::set<uint32_t>{2, 40}));
  ASSERT_TRUE(sim_->destroy_snapshot(id).has_value());
}

}  // namespace
}  // namespace blkvault::kernel
