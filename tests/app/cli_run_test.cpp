// `blkvault run JOB` through the real executable on the simulated module: the
// order and environment of hooks (recorded in files the hooks write), a
// failing and a timed-out pre hook, a failed backup seen by the post hook and
// the on-failure command, retention, and concurrent runs.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {

using nlohmann::json;

class RunCliTest : public BackupCliTest {
 protected:
  static constexpr uint64_t kDeviceSize = 4 << 20;

  std::string config_ = dir_ / "blkvault.toml";
  std::string log_ = dir_ / "blkvault.log";
  bool syslog_ = false;  // [report] syslog

  // Writes the configuration: the fixture's repository and module, a log
  // file, small difference storage, then `jobs` (TOML text).
  void write_config(const std::string& jobs, const std::string& repository_extra = "") {
    std::ofstream(config_) << "module = \"" << sim_ << "\"\n"
                           << "[repository]\npath = \"" << repo_ << "\"\n"
                           << repository_extra << "[diff-storage]\nsize = \"4M\"\nlimit = \"16M\"\n"
                           << "[report]\nlog-file = \"" << log_ << "\"\nsyslog = " << (syslog_ ? "true" : "false") << "\n"
                           << jobs;
  }
  CliRun run(const std::string& job, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = extra;
    args.insert(args.end(), {"run", job, "--config", config_});
    return bv(args);
  }
  // The log file's lines without their "TIME blkvault[PID]: " prefix.
  std::vector<std::string> log_lines() {
    std::vector<std::string> out;
    std::ifstream in(log_);
    std::string line;
    static const std::regex prefix(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d blkvault\[\d+\]: )");
    while (std::getline(in, line)) {
      EXPECT_TRUE(std::regex_search(line, prefix)) << line;
      out.push_back(std::regex_replace(line, prefix, ""));
    }
    return out;
  }
  bool log_has(const std::string& text) {
    for (const auto& l : log_lines()) {
      if (l == text) return true;
    }
    return false;
  }
  bool log_has_prefix(const std::string& text) {
    for (const auto& l : log_lines()) {
      if (l.rfind(text, 0) == 0) return true;
    }
    return false;
  }
  std::vector<uint64_t> generation_ids() {
    auto r = bv({"--json", "list"});
    EXPECT_EQ(r.exit_status, 0) << r.err;
    std::vector<uint64_t> ids;
    const json list = json::parse(r.out);
    for (const auto& g : list["generations"]) ids.push_back(g["id"].get<uint64_t>());
    return ids;
  }
  // A hook that says it started (touches `started`) and waits for `release`.
  std::string blocking_hook(const std::string& started, const std::string& release) {
    return "[\"sh\", \"-c\", \"touch " + started + "; i=0; while [ ! -e " + release +
           " ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\"]";
  }
  static void wait_for_file(const std::string& path) {
    for (int i = 0; i < 1200 && !std::filesystem::exists(path); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
  }
};

TEST_F(RunCliTest, HooksRunInOrderWithTheJobsEnvironmentAndTheOutcomeIsLogged) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 1);
  const std::string order = dir_ / "order", snap = dir_ / "snapshots.json";
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\n" +
               "hooks.pre = [\"sh\", \"-c\", \"echo pre $BLKVAULT_JOB $BLKVAULT_HOOK ${BLKVAULT_PASSWORD-no-passphrase} "
               ">> " + order + "; echo flushed\"]\n" +
               // A shell string; it sees the snapshot held.
               "hooks.post-snapshot = \"echo post-snapshot $BLKVAULT_DEVICES >> " + order + "; " BLKVAULT_BINARY
               " --json sim show > " + snap + "\"\n" +
               "hooks.post = [\"sh\", \"-c\", \"echo post $BLKVAULT_STATUS $BLKVAULT_GENERATION "
               "[$BLKVAULT_ERROR] >> " + order + "\"]\n");
  auto r = run("nightly");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out.rfind("job nightly: success: generation 1 committed: 1 device(s), read ", 0), 0u) << r.out;
  EXPECT_EQ(read_whole(order), "pre nightly pre no-passphrase\npost-snapshot " + dev + "\npost success 1 []\n");
  auto held = json::parse(read_whole(snap));
  ASSERT_EQ(held["snapshots"].size(), 1u) << held.dump();
  EXPECT_TRUE(held["snapshots"][0]["taken"].get<bool>());
  EXPECT_TRUE(sim_show()["snapshots"].empty()) << "the snapshot was released";
  EXPECT_EQ(generation_ids(), std::vector<uint64_t>{1});
  EXPECT_TRUE(restore_bytes("1", dev) == read_whole(dev));

  auto lines = log_lines();
  ASSERT_GE(lines.size(), 5u);
  EXPECT_EQ(lines.front(), "job nightly: started: devices " + dev + ", repository " + repo_);
  EXPECT_TRUE(log_has("job nightly: pre hook: flushed"));
  EXPECT_TRUE(log_has_prefix("job nightly: pre hook [\"sh\", \"-c\", \"echo pre ")) << read_whole(log_);
  EXPECT_TRUE(log_has_prefix("job nightly: post-snapshot hook \"echo post-snapshot"));
  EXPECT_EQ(lines.back().rfind("job nightly: success: generation 1 committed: 1 device(s), read ", 0), 0u)
      << lines.back();

  auto j = run("nightly", {"--json"});
  ASSERT_EQ(j.exit_status, 0) << j.err;
  auto result = json::parse(j.out);
  EXPECT_EQ(result["status"], "success");
  EXPECT_EQ(result["generation"], 2);
  EXPECT_EQ(result["backup"]["devices"][0]["mode"], "incremental");
  EXPECT_EQ(result["hooks"].size(), 3u);
}

TEST_F(RunCliTest, AFailingPreHookAbortsTheJobBeforeAnySnapshot) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 2);
  const std::string post = dir_ / "post", snap_hook = dir_ / "post-snapshot";
  write_config("[job.db]\ndevices = [\"" + dev + "\"]\n" +
               "hooks.pre = [\"sh\", \"-c\", \"echo database refused to quiesce >&2; exit 3\"]\n" +
               "hooks.post-snapshot = [\"touch\", \"" + snap_hook + "\"]\n" +
               "hooks.post = [\"sh\", \"-c\", \"echo $BLKVAULT_STATUS [$BLKVAULT_GENERATION] $BLKVAULT_ERROR > " +
               post + "\"]\n");
  auto r = run("db");
  const std::string why =
      "pre hook [\"sh\", \"-c\", \"echo database refused to quiesce >&2; exit 3\"] exited with status 3; no snapshot "
      "was taken";
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "blkvault: job db: " + why + "\n");
  auto sim = sim_show();
  EXPECT_TRUE(sim["snapshots"].empty()) << sim.dump();
  EXPECT_TRUE(sim["trackers"].empty()) << "no snapshot was ever taken: " << sim.dump();
  EXPECT_TRUE(generation_ids().empty());
  EXPECT_FALSE(std::filesystem::exists(snap_hook)) << "post-snapshot runs only after a pre hook that succeeded";
  EXPECT_EQ(read_whole(post), "failure [] " + why + "\n");
  EXPECT_TRUE(log_has("job db: pre hook: database refused to quiesce")) << read_whole(log_);
  EXPECT_EQ(log_lines().back(), "job db: failure: " + why);
}

TEST_F(RunCliTest, AHookThatOutlivesItsTimeoutIsKilledWithItsChildren) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 3);
  const std::string pidfile = dir_ / "child.pid";
  write_config("[job.slow]\ndevices = [\"" + dev + "\"]\n" +
               "hooks.pre = \"sleep 60 & echo $! > " + pidfile + "; wait\"\nhooks.timeout = 1\n");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run("slow");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.err, "blkvault: job slow: pre hook \"sleep 60 & echo $! > " + pidfile +
                       "; wait\" was killed after its timeout of 1s; no snapshot was taken\n");
  EXPECT_LT(seconds, 20);
  const pid_t child = std::stoi(read_whole(pidfile));
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = ::kill(child, 0) != 0;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone) << "the hook's child " << child << " survived its process group's kill";
  EXPECT_TRUE(generation_ids().empty());
}

TEST_F(RunCliTest, AFailedBackupReachesThePostHookAndTheOnFailureCommand) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 4);
  const std::string post = dir_ / "post", stdin_json = dir_ / "on-failure.json", env = dir_ / "on-failure.env";
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\n" +
               "hooks.post = [\"sh\", \"-c\", \"echo $BLKVAULT_STATUS [$BLKVAULT_GENERATION] > " + post + "\"]\n" +
               "report.on-failure = [\"sh\", \"-c\", \"cat > " + stdin_json +
               "; echo $BLKVAULT_JOB $BLKVAULT_STATUS $BLKVAULT_EXIT_STATUS > " + env + "; echo paged\"]\n");
  ASSERT_EQ(bv({"-q", "sim", "fault", "--device", dev, "--read-error", "1M:4096"}).exit_status, 0);
  auto r = run("nightly");
  EXPECT_EQ(r.exit_status, 1);
  const std::string prefix = "blkvault: job nightly: backup of " + dev + ": ";
  EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(read_whole(post), "failure []\n");
  EXPECT_EQ(read_whole(env), "nightly failure 1\n");
  auto j = json::parse(read_whole(stdin_json));
  EXPECT_EQ(j["job"], "nightly");
  EXPECT_EQ(j["status"], "failure");
  EXPECT_EQ(j["exit_status"], 1);
  EXPECT_TRUE(j["generation"].is_null());
  EXPECT_EQ("blkvault: job nightly: " + j["error"].get<std::string>() + "\n", r.err);
  EXPECT_EQ(j["devices"], json::array({dev}));
  EXPECT_EQ(j["log_file"], log_);
  EXPECT_TRUE(log_has("job nightly: on-failure command: paged")) << read_whole(log_);
  EXPECT_EQ(log_lines().back().rfind("job nightly: on-failure command [\"sh\", \"-c\", \"cat > ", 0), 0u);
  EXPECT_TRUE(log_has("job nightly: failure: " + j["error"].get<std::string>()));

  // Once the device reads again, the next run succeeds and does not page.
  ASSERT_EQ(bv({"-q", "sim", "fault", "--clear"}).exit_status, 0);
  std::filesystem::remove(stdin_json);
  auto ok = run("nightly");
  EXPECT_EQ(ok.exit_status, 0) << ok.err;
  EXPECT_EQ(read_whole(post), "success [2]\n");
  EXPECT_FALSE(std::filesystem::exists(stdin_json));
}

TEST_F(RunCliTest, RetentionPrunesAndCollectsAfterEachRun) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 5);
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\nretention = { keep-last = 2 }\n");
  std::mt19937_64 rng(5);
  std::vector<std::string> images;
  for (int i = 0; i < 3; ++i) {
    if (i > 0) sim_write(dev, static_cast<uint64_t>(i) * kChunk, random_bytes(rng, kChunk));
    images.push_back(read_whole(dev));
    auto r = run("nightly");
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_NE(r.out.find(i < 2 ? "; retention removed 0 generation(s), kept " + std::to_string(i + 1)
                               : "; retention removed 1 generation(s), kept 2"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find(", gc reclaimed "), std::string::npos) << r.out;
  }
  EXPECT_EQ(generation_ids(), (std::vector<uint64_t>{2, 3}));
  EXPECT_TRUE(restore_bytes("2", dev) == images[1]);
  EXPECT_TRUE(restore_bytes("3", dev) == images[2]);
  EXPECT_EQ(bv({"-q", "verify", "--data"}).exit_status, 0);
  EXPECT_NE(log_lines().back().find("retention removed 1 generation(s), kept 2"), std::string::npos);
}

TEST_F(RunCliTest, ARunOfAJobStillRunningIsSkippedWithItsReasonLogged) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 6);
  const std::string started = dir_ / "started", release = dir_ / "release";
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\nhooks.pre = " + blocking_hook(started, release) + "\n");
  CliRun first;
  std::thread t([&] { first = run("nightly"); });
  wait_for_file(started);
  auto second = run("nightly");
  std::ofstream(release) << "go";
  t.join();
  EXPECT_EQ(first.exit_status, 0) << first.err;
  EXPECT_EQ(second.exit_status, 4);
  static const std::regex skipped(
      R"(blkvault: job nightly skipped: its previous run \(pid \d+, started \d{4}-\d\d-\d\dT[0-9:]+[+-]\d\d:\d\d\) is still going\n)");
  EXPECT_TRUE(std::regex_match(second.err, skipped)) << second.err;
  EXPECT_EQ(generation_ids(), std::vector<uint64_t>{1});
  bool logged = false;
  for (const auto& l : log_lines()) logged = logged || l.rfind("job nightly: skipped: its previous run (pid ", 0) == 0;
  EXPECT_TRUE(logged) << read_whole(log_);
}

TEST_F(RunCliTest, TwoJobsOnOneRepositoryWaitForTheLockOrFailCleanly) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 7), b = make_device("b.img", kDeviceSize, 8);
  const std::string started = dir_ / "started", release = dir_ / "release";
  write_config("[job.first]\ndevices = [\"" + a + "\"]\nhooks.pre = " + blocking_hook(started, release) + "\n" +
               "[job.impatient]\ndevices = [\"" + b + "\"]\n" +
               "[job.patient]\ndevices = [\"" + b + "\"]\nlock-wait = \"2m\"\n");
  CliRun first, patient;
  std::thread t([&] { first = run("first"); });
  wait_for_file(started);
  auto impatient = run("impatient");
  std::thread u([&] { patient = run("patient"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::ofstream(release) << "go";
  t.join();
  u.join();
  EXPECT_EQ(first.exit_status, 0) << first.err;
  EXPECT_EQ(impatient.exit_status, 4);
  EXPECT_EQ(impatient.err.rfind("blkvault: job impatient: repository " + repo_ + " is locked by pid ", 0), 0u)
      << impatient.err;
  EXPECT_EQ(std::count(impatient.err.begin(), impatient.err.end(), '\n'), 1) << impatient.err;
  EXPECT_EQ(patient.exit_status, 0) << patient.err;
  EXPECT_EQ(generation_ids(), (std::vector<uint64_t>{1, 2}));
  EXPECT_TRUE(log_has_prefix("job impatient: failure: repository " + repo_ + " is locked by pid "));
}

TEST_F(RunCliTest, AnInterruptedRunStillRunsItsPostHookAndExits130) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 10);
  const std::string post = dir_ / "post";
  // The pre hook interrupts blkvault itself, as a SIGTERM from systemd would.
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\n" +
               "hooks.pre = [\"sh\", \"-c\", \"kill -TERM $PPID; sleep 30\"]\n" +
               "hooks.post = [\"sh\", \"-c\", \"echo $BLKVAULT_STATUS $BLKVAULT_ERROR > " + post + "\"]\n");
  auto r = run("nightly");
  EXPECT_EQ(r.exit_status, 130);
  EXPECT_EQ(r.err, "blkvault: job nightly: interrupted by SIGTERM; no snapshot was taken\n");
  EXPECT_EQ(read_whole(post), "failure interrupted by SIGTERM; no snapshot was taken\n");
  EXPECT_TRUE(generation_ids().empty());
  EXPECT_EQ(log_lines().back(), "job nightly: failure: interrupted by SIGTERM; no snapshot was taken");
}

TEST_F(RunCliTest, ThePassphraseMayComeFromTheConfigFile) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 9);
  const std::string pass = dir_ / "passphrase";
  std::ofstream(pass) << kPassphrase << "\n";
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\n", "password-file = \"" + pass + "\"\n");
  auto r = run_blkvault({"run", "nightly", "--config", config_}, {"BLKVAULT_CACHE_DIR=" + dir_ / "cache"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(generation_ids(), std::vector<uint64_t>{1});
}

TEST_F(RunCliTest, RetentionWithGcOffPrunesOnly) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 10);
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\nretention = { keep-last = 1, gc = false }\n");
  std::mt19937_64 rng(10);
  for (int i = 0; i < 2; ++i) {
    if (i > 0) sim_write(dev, 0, random_bytes(rng, kChunk));
    auto r = run("nightly", {"--json"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    const json result = json::parse(r.out);
    EXPECT_EQ(result["prune"]["removed"].size(), i == 0 ? 0u : 1u) << r.out;
    EXPECT_FALSE(result["prune"].contains("gc")) << r.out;
  }
  EXPECT_EQ(generation_ids(), std::vector<uint64_t>{2});
  EXPECT_EQ(log_lines().back().find("gc reclaimed"), std::string::npos) << log_lines().back();
  EXPECT_TRUE(restore_bytes("2", dev) == read_whole(dev));
}

// A unix datagram socket standing in for /dev/log (BLKVAULT_SYSLOG_SOCKET).
class FakeSyslog {
 public:
  explicit FakeSyslog(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  }
  ~FakeSyslog() { ::close(fd_); }
  // The datagrams received so far.
  std::vector<std::string> messages() {
    std::vector<std::string> out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0;) out.emplace_back(buf, static_cast<size_t>(n));
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST_F(RunCliTest, TheOutcomeLineGoesToSyslogWithItsPriority) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 11);
  const std::string socket = dir_ / "log.sock";
  FakeSyslog syslog(socket);
  syslog_ = true;
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\n[job.broken]\ndevices = [\"" + dev +
               "\"]\nhooks.pre = [\"false\"]\n");
  const std::vector<std::string> env = {"BLKVAULT_SYSLOG_SOCKET=" + socket};
  auto ok = bv({"run", "nightly", "--config", config_}, "", env);
  ASSERT_EQ(ok.exit_status, 0) << ok.err;
  auto bad = bv({"run", "broken", "--config", config_}, "", env);
  ASSERT_EQ(bad.exit_status, 1) << bad.err;

  auto messages = syslog.messages();
  ASSERT_EQ(messages.size(), 2u) << "only the outcome lines go to syslog";
  // <PRI> = facility daemon (3 << 3) | info (6) or err (3); the timestamp syslog(3) writes; ident[pid].
  static const std::regex head(R"(^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d blkvault\[\d+\]: )");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(messages[0], m, head)) << messages[0];
  EXPECT_EQ(m[1], "30");
  EXPECT_EQ(messages[0].substr(m[0].length()).rfind("job nightly: success: generation 1 committed: 1 device(s)", 0), 0u)
      << messages[0];
  ASSERT_TRUE(std::regex_search(messages[1], m, head)) << messages[1];
  EXPECT_EQ(m[1], "27");
  EXPECT_EQ(messages[1].substr(m[0].length()),
            "job broken: failure: pre hook [\"false\"] exited with status 1; no snapshot was taken");
  EXPECT_FALSE(log_has_prefix("syslog: ")) << read_whole(log_);
}

TEST_F(RunCliTest, AnUndeliverableSyslogLineIsNotedInTheLogFile) {
  init_repo();
  const std::string dev = make_device("a.img", kDeviceSize, 12);
  syslog_ = true;
  write_config("[job.nightly]\ndevices = [\"" + dev + "\"]\n");
  const std::string missing = dir_ / "no-such.sock";
  auto r = bv({"run", "nightly", "--config", config_}, "", {"BLKVAULT_SYSLOG_SOCKET=" + missing});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(log_lines().back(), "job nightly: syslog: " + missing + ": No such file or directory");
}

TEST_F(RunCliTest, AnUnknownJobIsBadUsage) {
  write_config("[job.nightly]\ndevices = [\"/dev/sda\"]\n[job.weekly]\ndevices = [\"/dev/sdb\"]\n");
  auto r = run("nightlly");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: job nightlly: " + config_ + " has no such job (it has: nightly, weekly)\n");
  EXPECT_FALSE(std::filesystem::exists(log_));
}

}  // namespace
}  // namespace blkvault::test
