// Failed backups through the real executable: an injected read error, a
// difference storage that overflows, SIGTERM mid-run. Each commits nothing,
// leaves no snapshot, keeps the baseline, and the next incremental is right.
// --partial keeps the devices that succeeded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "app/backup_support.h"
#include "kernel/sim_module.h"
#include "repo/repository.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kDeviceSize = 8 << 20;

class BackupFailureTest : public BackupCliTest {
 protected:
  // The generations as the repository records them (failed runs included).
  std::vector<repo::GenerationInfo> generations() {
    auto r = repo::Repository::open(repo_, repo_options());
    EXPECT_TRUE(r) << r.error().message();
    if (!r) return {};
    auto g = (*r)->generations();
    EXPECT_TRUE(g) << g.error().message();
    return g ? *g : std::vector<repo::GenerationInfo>{};
  }

  CliRun backup(const std::vector<std::string>& devices, const std::vector<std::string>& extra = {},
                const std::vector<std::string>& env = {}) {
    std::vector<std::string> args = {"--json", "backup"};
    for (const auto& a : diff_storage_args()) args.push_back(a);
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), devices.begin(), devices.end());
    return bv(args, "", env);
  }

  // The state a failed run must leave: no snapshot held, nothing committed after
  // `last_good`, and the next incremental reads exactly `changes` and restores right.
  void expect_clean_failure_then_correct_incremental(const std::string& device, uint64_t last_good,
                                                     const ChangeLog& changes) {
    EXPECT_TRUE(sim_show()["snapshots"].empty()) << "a snapshot was left behind";
    for (const auto& g : generations()) {
      if (g.id > last_good) {
        EXPECT_EQ(g.state, repo::GenerationState::kFailed) << "generation " << g.id;
      }
    }
    auto latest = bv({"--json", "restore", "--generation", "latest", "--device", device, "--to", dir_ / "probe"});
    EXPECT_EQ(latest.exit_status, 0) << latest.err;
    EXPECT_NE(latest.out.find("\"generation\": " + std::to_string(last_good) + ","), std::string::npos) << latest.out;

    ASSERT_EQ(bv({"-q", "sim", "fault", "--clear"}).exit_status, 0);
    auto next = backup_ok({device});
    EXPECT_EQ(next["devices"][0]["mode"], "incremental");
    EXPECT_EQ(next["devices"][0]["read_bytes"].get<uint64_t>(), changes.bytes(device, kChunk, kDeviceSize));
    EXPECT_TRUE(restore_bytes("latest", device) == read_whole(device)) << "restored image differs";
  }
};

TEST_F(BackupFailureTest, ReadErrorCommitsNothingAndTheNextIncrementalIsCorrect) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 11);
  backup_ok({a});
  ChangeLog changes;
  sim_write(a, 2 * kChunk + 5, "changed before the failing run");
  changes.add(a, 2 * kChunk + 5, 30, kChunk);
  ASSERT_EQ(bv({"-q", "sim", "fault", "--device", a, "--read-error", "2M:4096"}).exit_status, 0);

  auto r = backup(std::vector<std::string>{a}, {"--full"});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("blkvault: backup of " + a + ": ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  expect_clean_failure_then_correct_incremental(a, 1, changes);
}

TEST_F(BackupFailureTest, DifferenceStorageOverflowCommitsNothingAndTheNextIncrementalIsCorrect) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 12);
  backup_ok({a});
  // While the snapshot is held: cap the storage and overwrite 4 MiB through the
  // tracked path, so copy-on-write overflows and the image becomes unreadable.
  std::mt19937_64 rng(12);
  std::string big = dir_ / "big";
  { std::ofstream(big, std::ios::binary) << random_bytes(rng, 4 << 20); }
  ChangeLog changes;
  changes.add(a, 0, 4 << 20, kChunk);
  std::string hook = BLKVAULT_BINARY " -q sim fault --storage-limit 256K && " BLKVAULT_BINARY " -q sim write " + a +
                     " --offset 0 < " + big;
  auto r = backup({a}, {}, {"BLKVAULT_SIM_AFTER_TAKE=" + hook});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "blkvault: backup of " + a + ": the snapshot of " + a +
                       " is corrupted (difference storage overflow or I/O error); its image can no longer be read: "
                       "No space left on device\n");
  expect_clean_failure_then_correct_incremental(a, 1, changes);
}

TEST_F(BackupFailureTest, SigtermMidBackupExits130ReleasesTheSnapshotAndCommitsNothing) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 13);
  backup_ok({a});
  ChangeLog changes;
  sim_write(a, 5 * kChunk, "before the interrupted run");
  changes.add(a, 5 * kChunk, 26, kChunk);
  // The hook runs in a shell whose parent is blkvault, once the snapshot is taken.
  auto r = backup({a}, {}, {"BLKVAULT_SIM_AFTER_TAKE=kill -TERM $PPID"});
  EXPECT_EQ(r.exit_status, 130);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "blkvault: backup interrupted by SIGTERM: the snapshot was released and nothing was committed\n");
  expect_clean_failure_then_correct_incremental(a, 1, changes);
}

TEST_F(BackupFailureTest, PartialKeepsTheDevicesThatSucceeded) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 14);
  const std::string b = make_device("b.img", kDeviceSize, 15);
  backup_ok({a, b});
  sim_write(a, 0, "a changed");
  sim_write(b, 0, "b changed");
  const std::string a2 = read_whole(a);
  ASSERT_EQ(bv({"-q", "sim", "fault", "--device", b, "--read-error", "0:4096"}).exit_status, 0);

  // Without --partial: nothing.
  auto r = backup({a, b});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("blkvault: backup of " + b + ": ", 0), 0u) << r.err;

  // With --partial: a is kept, b marked failed; exit 1 with one line; the JSON says so.
  r = backup({a, b}, {"--partial"});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.err.rfind("blkvault: generation 3 committed as partial: backup of " + b + ": ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["generation"], 3);
  EXPECT_EQ(j["state"], "partial");
  EXPECT_EQ(j["devices"][0]["complete"], true);
  EXPECT_EQ(j["devices"][1]["complete"], false);
  EXPECT_TRUE(j["devices"][1]["error"].is_string());
  EXPECT_TRUE(sim_show()["snapshots"].empty());

  EXPECT_TRUE(restore_bytes("3", a) == a2);
  auto failed = bv({"restore", "--generation", "3", "--device", b, "--to", dir_ / "b-out"});
  EXPECT_EQ(failed.exit_status, 2);
  EXPECT_EQ(failed.err.rfind("blkvault: device " + b + " failed in generation 3", 0), 0u) << failed.err;

  // b's baseline did not advance: its next incremental still holds the change.
  ASSERT_EQ(bv({"-q", "sim", "fault", "--clear"}).exit_status, 0);
  auto next = backup_ok({a, b});
  EXPECT_EQ(next["devices"][0]["read_bytes"], 0);
  EXPECT_EQ(next["devices"][1]["mode"], "incremental");
  EXPECT_EQ(next["devices"][1]["read_bytes"], kChunk);
  EXPECT_TRUE(restore_bytes("latest", b) == read_whole(b));
  EXPECT_TRUE(restore_bytes("latest", a) == a2);
}


TEST_F(BackupFailureTest, AKilledBackupIsCleanedUpByTheNextRun) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 18);
  backup_ok({a});
  ChangeLog changes;
  sim_write(a, 9 * kChunk, "before the killed run");
  changes.add(a, 9 * kChunk, 21, kChunk);
  // SIGKILL: no handler, no cleanup; the snapshot and an in-progress generation stay behind.
  auto killed = backup({a}, {}, {"BLKVAULT_SIM_AFTER_TAKE=kill -KILL $PPID"});
  EXPECT_EQ(killed.exit_status, 128 + SIGKILL);
  ASSERT_EQ(sim_show()["snapshots"].size(), 1u);

  auto next = backup({a});
  ASSERT_EQ(next.exit_status, 0) << next.err;
  const std::string snapshot = "destroyed snapshot ";
  EXPECT_EQ(next.err.rfind("warning: " + snapshot, 0), 0u) << next.err;
  EXPECT_NE(next.err.find(" left behind by an interrupted blkvault run\n"), std::string::npos) << next.err;
  auto j = nlohmann::json::parse(next.out);
  EXPECT_EQ(j["generation"], 3);
  EXPECT_EQ(j["devices"][0]["mode"], "incremental");
  EXPECT_EQ(j["devices"][0]["read_bytes"].get<uint64_t>(), changes.bytes(a, kChunk, kDeviceSize));
  EXPECT_TRUE(sim_show()["snapshots"].empty());
  auto gens = generations();
  ASSERT_EQ(gens.size(), 3u);
  EXPECT_EQ(gens[1].state, repo::GenerationState::kFailed);
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
}

TEST_F(BackupFailureTest, PartialWithEveryDeviceFailedCommitsNothingAndSaysWhy) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 17);
  backup_ok({a});
  ChangeLog changes;
  sim_write(a, 0, "changed");
  changes.add(a, 0, 7, kChunk);
  ASSERT_EQ(bv({"-q", "sim", "fault", "--device", a, "--read-error", "0:512"}).exit_status, 0);
  auto r = backup({a}, {"--partial"});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("blkvault: every device failed, nothing was committed: backup of " + a + ": ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  expect_clean_failure_then_correct_incremental(a, 1, changes);
}

TEST_F(BackupFailureTest, SigintFromOutsideWhileTheSnapshotIsHeldExits130AndReleasesIt) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 16);
  backup_ok({a});
  ChangeLog changes;
  sim_write(a, 7 * kChunk, "before the interrupted run");
  changes.add(a, 7 * kChunk, 26, kChunk);

  const std::string err = dir_ / "err";
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(fd, 2);
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    const std::string repo_env = "BLKVAULT_REPO=" + repo_, module_env = "BLKVAULT_MODULE=" + sim_;
    ::putenv(const_cast<char*>(repo_env.c_str()));
    ::putenv(const_cast<char*>(module_env.c_str()));
    const std::string pass_env = "BLKVAULT_PASSWORD=" + std::string(kPassphrase);
    const std::string cache_env = "BLKVAULT_CACHE_DIR=" + dir_ / "cache";
    ::putenv(const_cast<char*>(pass_env.c_str()));
    ::putenv(const_cast<char*>(cache_env.c_str()));
    ::putenv(const_cast<char*>("BLKVAULT_SIM_AFTER_TAKE=sleep 1"));  // holds the snapshot a moment
    ::execl(BLKVAULT_BINARY, BLKVAULT_BINARY, "backup", "--diff-storage-size", "4M", "--diff-storage-limit", "16M",
            a.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait until the snapshot is taken, then interrupt.
  auto sim = kernel::SimModule::open(sim_dir_);
  ASSERT_TRUE(sim) << sim.error().message();
  bool taken = false;
  for (int i = 0; i < 500 && !taken; ++i) {
    auto view = (*sim)->inspect();
    ASSERT_TRUE(view) << view.error().message();
    for (const auto& s : view->snapshots) taken = taken || s.taken;
    if (!taken) ::usleep(10000);
  }
  EXPECT_TRUE(taken) << "the backup never took its snapshot";
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_EQ(read_whole(err),
            "blkvault: backup interrupted by SIGINT: the snapshot was released and nothing was committed\n");
  expect_clean_failure_then_correct_incremental(a, 1, changes);
}

}  // namespace
}  // namespace blkvault::test
