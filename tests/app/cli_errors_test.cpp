// Every documented failure of init, backup and restore: its one line on stderr
// and its exit status (docs/CLI.md).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "app/backup_support.h"
#include "app/subprocess.h"
#include "repo/lock.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kDeviceSize = 4 << 20;

class CliErrors : public BackupCliTest {};

TEST_F(CliErrors, NoRepositoryGiven) {
  auto r = run_blkvault({"restore", "--device", "x", "--to", dir_ / "out"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: no repository given: use --repo PATH or set BLKVAULT_REPO\n");
}

TEST_F(CliErrors, RepositoryThatDoesNotExist) {
  auto r = run_blkvault({"restore", "--repo", dir_ / "nope", "--device", "x", "--to", dir_ / "out"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: repository " + (dir_ / "nope") + " does not exist (create it with: blkvault init)\n");
}

TEST_F(CliErrors, InitRefusesBadSizesAndLevels) {
  auto r = bv({"init", "--chunk-size", "3M"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --chunk-size 3M: must be a power of two from 64K to 16M\n");
  r = bv({"init", "--chunk-size", "32K"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --chunk-size 32K: must be a power of two from 64K to 16M\n");
  r = bv({"init", "--chunk-size", "lots"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err,
            "blkvault: --chunk-size: invalid size 'lots': expected a number with an optional unit K, M, G, T "
            "(powers of 1024)\n");
  r = bv({"init", "--compression-level", "20"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --compression-level 20: must be from 1 to 19\n");
  r = bv({"init", "--chunk-size", "4M", "--pack-size", "1M"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --pack-size 1M: must be from the chunk size (4.0 MiB) to 4G\n");
  EXPECT_FALSE(std::filesystem::exists(repo_)) << "a refused init created the directory";
}

TEST_F(CliErrors, InitRefusesANonEmptyDirectoryAndAnExistingRepository) {
  std::filesystem::create_directories(repo_);
  { std::ofstream(repo_ + "/precious") << "data"; }
  auto r = bv({"init"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: " + repo_ + " is not empty (init needs a new or empty directory)\n");
  std::filesystem::remove(repo_ + "/precious");
  r = bv({"init"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("created repository " + repo_ + " (id ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("): chunks of 1.0 MiB, zstd level 3, packs of up to 64.0 MiB, encrypted with "), std::string::npos)
      << r.out;
  r = bv({"init"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: " + repo_ + " is already a repository (it has a config file)\n");
}

TEST_F(CliErrors, InitJsonDescribesTheRepository) {
  auto r = bv({"--json", "init", "--chunk-size", "256K", "--compression-level", "7", "--pack-size", "8M"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["repo"], repo_);
  EXPECT_EQ(j["chunk_size"], 256 << 10);
  EXPECT_EQ(j["compression_level"], 7);
  EXPECT_EQ(j["pack_size"], 8 << 20);
  EXPECT_EQ(j["id"].get<std::string>().size(), 32u);
}

TEST_F(CliErrors, BackupRefusesBadDiffStorageSizes) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 1);
  auto r = bv({"backup", "--diff-storage-size", "12X", a});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err,
            "blkvault: --diff-storage-size: invalid size '12X': expected a number with an optional unit K, M, G, T "
            "(powers of 1024)\n");
  r = bv({"backup", "--diff-storage-size", "64M", "--diff-storage-limit", "32M", a});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --diff-storage-limit 32M is smaller than --diff-storage-size 64M\n");
  r = bv({"backup", "--diff-storage-limit", "512K", a});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --diff-storage-limit 512K: must be at least 1M\n");
  // A limit alone below the default initial size (1G) lowers the initial size with it.
  r = bv({"-q", "backup", "--diff-storage-limit", "16M", a});
  EXPECT_EQ(r.exit_status, 0) << r.err;
}

// --diff-storage naming something that is not a directory: a whole device for
// difference storage (a regular file is the simulated module's stand-in).
TEST_F(CliErrors, DiffStorageOnAWholeDeviceIsUsedRawAndNeverTheDeviceBeingBackedUp) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 3);
  const std::string spare = make_device("spare.img", 8 << 20, 4);
  auto r = bv({"backup", "--diff-storage", a, a});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: taking the snapshot: difference storage device " + a +
                       " is being backed up; give another device or a directory\n");
  EXPECT_TRUE(sim_show()["snapshots"].empty());
  r = bv({"-q", "backup", "--diff-storage", spare, "--diff-storage-size", "4M", a});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(sim_show()["snapshots"].empty());
  EXPECT_TRUE(std::filesystem::exists(spare)) << "a storage device is never deleted";
  EXPECT_EQ(restore_bytes("latest", a), read_whole(a));
}

TEST_F(CliErrors, BackupWithoutDeviceIsUsage) {
  init_repo();
  auto r = bv({"backup"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: DEVICE is required (see 'blkvault --help')\n");
}

TEST_F(CliErrors, BackupOfAMissingDeviceSaysWhichAndTakesNoSnapshot) {
  init_repo();
  auto r = bv({"backup", "--diff-storage-size", "4M", "--diff-storage-limit", "16M", dir_ / "missing.img"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err.rfind("blkvault: taking the snapshot: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(dir_ / "missing.img"), std::string::npos) << r.err;
  EXPECT_TRUE(sim_show()["snapshots"].empty());
}

TEST_F(CliErrors, MissingKernelModuleSaysHowToLoadItOrUseTheSimulation) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 2);
  const std::string control = dir_ / "no-such-veeamblksnap";
  auto r = bv({"backup", "--module", control, a});
  EXPECT_EQ(r.exit_status, 5);
  EXPECT_EQ(r.err, "blkvault: opening " + control +
                       ": No such file or directory (is the veeamblksnap module loaded? try 'modprobe veeamblksnap', "
                       "or use --module sim:DIR)\n");
}

TEST_F(CliErrors, KernelModuleWithoutRootSaysRootIsNeeded) {
  if (::geteuid() != 0) {
    // Unprivileged: the real control device (0600 root) refuses us; only testable where it exists.
    GTEST_SKIP() << "needs root to create a root-only control node and drop privileges";
  }
  if (!app::program_available("setpriv")) GTEST_SKIP() << "setpriv (util-linux) is not installed";
  init_repo();
  const std::string control = dir_ / "veeamblksnap";
  { std::ofstream(control) << ""; }
  ::chmod(control.c_str(), 0600);
  ::chmod(dir_.path().c_str(), 0755);
  auto r = run_blkvault({"backup", "--repo", repo_, "--module", control, "/dev/null"}, {});
  ASSERT_EQ(r.exit_status, 5) << r.err;  // sanity: as root it opens, then VERSION fails
  // Run as nobody.
  std::string out = dir_ / "nobody.err";
  std::string cmd = "setpriv --reuid=65534 --regid=65534 --clear-groups " BLKVAULT_BINARY " backup --repo " + repo_ +
                    " --module " + control + " /dev/null 2> " + out;
  int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 5);
  EXPECT_EQ(read_whole(out), "blkvault: opening " + control + ": Permission denied (run as root)\n");
}

TEST_F(CliErrors, LockedRepositoryIsExitFourAndNamesTheHolder) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 3);
  auto lock = repo::RepoLock::acquire(repo_, 0);
  ASSERT_TRUE(lock) << lock.error().message();
  auto r = bv({"backup", a});
  EXPECT_EQ(r.exit_status, 4);
  EXPECT_EQ(r.err.rfind("blkvault: repository " + repo_ + " is locked by pid " + std::to_string(::getpid()) + " on host ", 0),
            0u)
      << r.err;
  r = bv({"--lock-wait", "0.2", "backup", a});
  EXPECT_EQ(r.exit_status, 4);
  EXPECT_NE(r.err.find(" (waited 0.2 s)\n"), std::string::npos) << r.err;
  EXPECT_TRUE(sim_show()["snapshots"].empty());
  EXPECT_TRUE(sim_show()["trackers"].empty()) << "the snapshot must not be attempted while the repository is locked";
}

TEST_F(CliErrors, RestoreOfAnUnknownGenerationListsTheGenerations) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 4);
  backup_ok({a});
  backup_ok({a});
  auto r = bv({"restore", "--generation", "7", "--device", a, "--to", dir_ / "out"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: generation 7 does not exist (the repository has: 1, 2)\n");
  r = bv({"restore", "--generation", "seven", "--device", a, "--to", dir_ / "out"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: 'seven' is not a generation id (a number, or 'latest')\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

TEST_F(CliErrors, RestoreFromAnEmptyRepository) {
  init_repo();
  auto r = bv({"restore", "--device", "x", "--to", dir_ / "out"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: the repository has no backup yet\n");
}

TEST_F(CliErrors, RestoreOfAnUnknownDeviceListsTheDevices) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 5);
  const std::string b = make_device("b.img", kDeviceSize, 6);
  backup_ok({a, b});
  auto r = bv({"restore", "--generation", "1", "--device", "/dev/sdc", "--to", dir_ / "out"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: generation 1 has no device /dev/sdc (it has: " + a + ", " + b + ")\n");
}

TEST_F(CliErrors, RestoreOverANonEmptyFileNeedsForce) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 7);
  backup_ok({a});
  const std::string to = dir_ / "existing.img";
  { std::ofstream(to) << "keep me"; }
  auto r = bv({"restore", "--device", a, "--to", to});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: restore target " + to + " is not empty; add --force to overwrite it\n");
  EXPECT_EQ(read_whole(to), "keep me");
  r = bv({"restore", "--device", a, "--to", to, "--force"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_TRUE(read_whole(to) == read_whole(a));
}

TEST_F(CliErrors, RestoreSummaryAndJson) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 8);
  backup_ok({a});
  auto r = bv({"restore", "--device", a, "--to", dir_ / "h.img"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("restored " + a + " as of generation 1 to " + (dir_ / "h.img") + ": 4.0 MiB (3.0 MiB of data, "
                            "1.0 MiB of zeros) in ",
                        0),
            0u)
      << r.out;
  r = bv({"--json", "restore", "--device", a, "--to", dir_ / "j.img"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["generation"], 1);
  EXPECT_EQ(j["device"], a);
  EXPECT_EQ(j["size_bytes"], kDeviceSize);
  EXPECT_EQ(j["written_bytes"].get<uint64_t>() + j["zero_bytes"].get<uint64_t>(), kDeviceSize);
  // The new file is sparse where the image is zero.
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "j.img").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kDeviceSize);
}


TEST_F(CliErrors, RestoreOfADamagedChunkIsExitThreeAndLeavesNoFile) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 9);
  backup_ok({a});
  // Flip one byte in the middle of every pack: some chunk's data no longer matches its hash.
  int packs = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(repo_ + "/packs")) {
    if (!e.is_regular_file()) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(e.file_size() / 2);
    f.seekg(middle);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(middle);
    f.write(&c, 1);
    ++packs;
  }
  ASSERT_GT(packs, 0);
  const std::string to = dir_ / "out.img";
  auto r = bv({"restore", "--device", a, "--to", to});
  EXPECT_EQ(r.exit_status, 3) << r.err;
  EXPECT_EQ(r.err.rfind("blkvault: restoring " + a + " of generation 1 to " + to + ": ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(to)) << "a failed restore left its new file";
}

}  // namespace
}  // namespace blkvault::test
