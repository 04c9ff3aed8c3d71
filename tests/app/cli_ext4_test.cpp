// Real ext4 filesystems through backup and restore: two devices, files changed
// between rounds with debugfs (behind the simulation's back, as a loop mount
// would), every generation restored byte-identical and e2fsck-clean.
// Skipped, saying why, when e2fsprogs is missing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "app/backup_support.h"
#include "app/subprocess.h"

namespace blkvault::test {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kFsSize = 48 << 20;

class Ext4BackupTest : public BackupCliTest {
 protected:
  void SetUp() override {
    for (const char* tool : {"mkfs.ext4", "debugfs", "e2fsck"}) {
      if (!app::program_available(tool) && !app::program_available(std::string("/usr/sbin/") + tool) &&
          !app::program_available(std::string("/sbin/") + tool)) {
        GTEST_SKIP() << tool << " is not installed (e2fsprogs); the ext4 tests need it";
      }
    }
  }

  static std::string tool(const std::string& name) {
    for (const std::string dir : {"/usr/sbin/", "/sbin/"}) {
      if (app::program_available(dir + name)) return dir + name;
    }
    return name;
  }

  int run(const std::vector<std::string>& argv) {
    auto r = app::run_process(argv, /*capture_stdout=*/false, /*quiet_stdout=*/true);
    return r ? r->exit_status : -1;
  }

  std::string make_fs(const std::string& name, uint64_t seed) {
    std::mt19937_64 rng(seed);
    const std::string staging = dir_ / (name + ".files");
    fs::create_directories(staging + "/data");
    for (int i = 0; i < 12; ++i) {
      std::ofstream(staging + "/data/file-" + std::to_string(i), std::ios::binary)
          << random_bytes(rng, 100000 + rng() % 400000);
    }
    const std::string image = dir_ / name;
    { std::ofstream(image).close(); }
    fs::resize_file(image, kFsSize);
    EXPECT_EQ(run({tool("mkfs.ext4"), "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", staging, image}),
              0);
    return image;
  }

  void change_files(const std::string& image, int round, std::mt19937_64& rng) {
    const std::string file = dir_ / ("new-" + std::to_string(round));
    std::ofstream(file, std::ios::binary) << random_bytes(rng, 300000);
    EXPECT_EQ(run({tool("debugfs"), "-w", "-R", "write " + file + " /new-" + std::to_string(round), image}), 0);
    EXPECT_EQ(run({tool("debugfs"), "-w", "-R", "rm /data/file-" + std::to_string(round), image}), 0);
    EXPECT_EQ(run({tool("debugfs"), "-w", "-R", "mkdir /dir-" + std::to_string(round), image}), 0);
  }
};

TEST_F(Ext4BackupTest, EveryGenerationRestoresByteIdenticalAndFsckClean) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init_repo();
  const std::string a = make_fs("a.ext4", seed + 1);
  const std::string b = make_fs("b.ext4", seed + 2);

  std::vector<std::pair<std::string, std::map<std::string, std::string>>> expected;
  auto r = backup_ok({a, b});
  expected.push_back({std::to_string(r["generation"].get<uint64_t>()), {{a, read_whole(a)}, {b, read_whole(b)}}});
  for (int round = 0; round < 2; ++round) {
    change_files(a, round, rng);
    if (round == 1) change_files(b, round, rng);
    r = backup_ok({a, b});
    EXPECT_EQ(r["devices"][0]["mode"], "incremental");
    EXPECT_EQ(r["devices"][1]["mode"], "incremental");
    // Only what debugfs touched is read: a small part of the filesystem.
    EXPECT_GT(r["devices"][0]["read_bytes"].get<uint64_t>(), 0u);
    EXPECT_LT(r["devices"][0]["read_bytes"].get<uint64_t>(), kFsSize / 4);
    if (round == 0) {
      EXPECT_EQ(r["devices"][1]["read_bytes"], 0);
    }
    expected.push_back({std::to_string(r["generation"].get<uint64_t>()), {{a, read_whole(a)}, {b, read_whole(b)}}});
  }

  for (const auto& [gen, devices] : expected) {
    for (const auto& [dev, bytes] : devices) {
      SCOPED_TRACE("generation " + gen + " of " + dev);
      const std::string to = dir_ / ("restored-" + gen + "-" + fs::path(dev).filename().string());
      auto rr = bv({"-q", "restore", "--generation", gen, "--device", dev, "--to", to});
      ASSERT_EQ(rr.exit_status, 0) << rr.err;
      EXPECT_TRUE(read_whole(to) == bytes) << "restored image differs";
      EXPECT_EQ(run({tool("e2fsck"), "-fn", to}), 0) << "e2fsck -fn " << to;
    }
  }
}

}  // namespace
}  // namespace blkvault::test
