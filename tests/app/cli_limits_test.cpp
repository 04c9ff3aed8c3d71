// backup --limit-read / --limit-upload / --psi-file through the real executable
// on the simulated module: a throttled run never reads faster than its limit, a
// signal ends its waiting promptly, the report says how long it waited (text,
// --json, the run log line), adaptive mode without a PSI file says so once, and
// bad values are usage errors; the upload limit of a backup into a real Ceph
// gateway (skipped, saying why, without one).
#include <chrono>
#include <fstream>
#include <regex>

#include "app/backup_support.h"
#include "ceph_gateway.h"

namespace blkvault::test {
namespace {

using nlohmann::json;

class LimitsCliTest : public BackupCliTest {};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST_F(LimitsCliTest, AThrottledBackupNeverReadsFasterThanItsLimit) {
  init_repo();
  constexpr uint64_t kSize = 40 << 20;  // 41.9 MB
  constexpr double kRate = 20e6;        // --limit-read 20
  const std::string dev = make_device("big.img", kSize, 7);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = backup_ok({dev}, {"--limit-read", "20"});
  const double wall = seconds_since(t0);
  ASSERT_EQ(r["read_bytes"], kSize);
  const json& limit = r["read_limit"];
  ASSERT_TRUE(limit.is_object()) << r.dump();
  EXPECT_EQ(limit["limit"], "20");
  EXPECT_EQ(limit["adaptive"], false);
  EXPECT_EQ(limit["bytes_per_s"], kRate);
  EXPECT_TRUE(r["upload_limit"].is_null());
  // Strict: no faster than the rate, beyond the one 1 MB burst (50 ms at 20 MB/s).
  const double floor_s = (static_cast<double>(kSize) - 1e6) / kRate;  // 2.047 s
  const double device_s = r["devices"][0]["duration_s"].get<double>();
  EXPECT_GE(device_s, floor_s);
  EXPECT_GE(wall, floor_s);
  // Generous: a loaded 2-core machine under a sanitizer may be slow on its own.
  EXPECT_LT(device_s, 3 * floor_s + 10);
  const double throttled = limit["throttled_s"].get<double>();
  EXPECT_GT(throttled, 0);
  EXPECT_LE(throttled, device_s);
  std::printf("read %.1f MB in %.3f s (%.2f MB/s, limit 20), throttled %.3f s, process %.3f s\n", kSize / 1e6,
              device_s, kSize / 1e6 / device_s, throttled, wall);
  EXPECT_EQ(restore_bytes("1", dev), read_whole(dev));
}

TEST_F(LimitsCliTest, ASignalEndsAThrottledBackupPromptly) {
  init_repo();
  const std::string dev = make_device("a.img", 8 << 20, 9);  // ~8.3 s at 1 MB/s
  std::vector<std::string> args = {"backup", dev, "--limit-read", "1"};
  for (const auto& a : diff_storage_args()) args.push_back(a);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = bv(args, "", {"BLKVAULT_SIM_AFTER_TAKE=(sleep 1; kill -TERM $PPID) >/dev/null 2>&1 &"});
  const double wall = seconds_since(t0);
  EXPECT_EQ(r.exit_status, 130);
  EXPECT_EQ(r.err, "blkvault: backup interrupted by SIGTERM: the snapshot was released and nothing was committed\n");
  EXPECT_LT(wall, 7.5) << "the wait for the limit did not see the signal (unseen, the read takes 8.3 s)";
}

TEST_F(LimitsCliTest, TheTextReportSaysHowLongReadsWaited) {
  init_repo();
  const std::string dev = make_device("a.img", 4 << 20, 1);
  std::vector<std::string> args = {"backup", dev, "--limit-read", "1000"};
  for (const auto& a : diff_storage_args()) args.push_back(a);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  // 4 MiB never outgrows the 50 MB burst of 1000 MB/s: no wait at all.
  EXPECT_NE(r.out.find("\n  read limit 1000 MB/s: waited 0.00s\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("upload limit"), std::string::npos) << r.out;
  auto plain = bv({"--json", "backup", dev, "--diff-storage-size", "4M", "--diff-storage-limit", "16M"});
  ASSERT_EQ(plain.exit_status, 0) << plain.err;
  const json j = json::parse(plain.out);
  EXPECT_TRUE(j["read_limit"].is_null());
  EXPECT_TRUE(j["upload_limit"].is_null());
}

TEST_F(LimitsCliTest, AdaptiveModeWithoutPressureInformationSaysSoOnceAndReadsAtMax) {
  init_repo();
  const std::string dev = make_device("a.img", 4 << 20, 2);
  const std::string missing = dir_ / "no-psi";
  std::vector<std::string> args = {"--json", "backup", dev, "--limit-read", "auto:1000", "--psi-file", missing};
  for (const auto& a : diff_storage_args()) args.push_back(a);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "warning: --limit-read auto:1000: I/O pressure is unavailable (cannot read " + missing +
                       ": No such file or directory): reading at 1000 MB/s\n");
  const json j = json::parse(r.out);
  EXPECT_EQ(j["read_limit"]["adaptive"], true);
  EXPECT_EQ(j["read_limit"]["pressure_available"], false);
  EXPECT_EQ(j["read_limit"]["pressure_file"], missing);
  EXPECT_EQ(j["read_limit"]["bytes_per_s"], 1e9);
}

TEST_F(LimitsCliTest, AdaptiveModeReadsThePressureFileItIsGiven) {
  init_repo();
  const std::string dev = make_device("a.img", 4 << 20, 3);
  const std::string psi = dir_ / "io.pressure";
  // High pressure from the first read: the limit is halved at once (from MAX,
  // as nothing was read yet) and the report counts that slowdown.
  std::ofstream(psi) << "some avg10=35.00 avg60=20.00 avg300=5.00 total=99\nfull avg10=10.00 avg60=0 avg300=0 total=9\n";
  std::vector<std::string> args = {"--json", "backup", dev, "--limit-read", "auto:400", "--psi-file", psi};
  for (const auto& a : diff_storage_args()) args.push_back(a);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const json j = json::parse(r.out);
  EXPECT_EQ(j["read_limit"]["pressure_available"], true);
  EXPECT_GE(j["read_limit"]["slowdowns"].get<int>(), 1);
  EXPECT_LE(j["read_limit"]["lowest_bytes_per_s"].get<double>(), 200e6);
}

TEST_F(LimitsCliTest, BadLimitsAreOneLineUsageErrors) {
  init_repo();
  const std::string dev = make_device("a.img", 1 << 20, 4);
  const std::string read_err =
      "' is not a read limit: expected a positive number of MB/s (1 MB = 10^6 bytes), 'auto' or 'auto:MAX'\n";
  for (const char* bad : {"0", "-5", "abc", "auto:abc", "auto:", "0x10"}) {
    SCOPED_TRACE(bad);
    auto r = bv({"backup", dev, std::string("--limit-read=") + bad});
    EXPECT_EQ(r.exit_status, 2);
    EXPECT_EQ(r.err, std::string("blkvault: --limit-read: '") + bad + read_err);
    EXPECT_EQ(r.out, "");
  }
  auto r = bv({"backup", dev, "--limit-read", "-5"});  // as a separate word too
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --limit-read: '-5" + read_err);
  for (const char* bad : {"0", "-5", "abc", "auto"}) {
    SCOPED_TRACE(bad);
    r = bv({"backup", dev, std::string("--limit-upload=") + bad});
    EXPECT_EQ(r.exit_status, 2);
    EXPECT_EQ(r.err, std::string("blkvault: --limit-upload: '") + bad +
                         "' is not a rate: expected a positive number of MB/s (1 MB = 10^6 bytes)\n");
  }
  r = bv({"backup", dev, "--limit-read", "20", "--psi-file", "/proc/pressure/io"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --psi-file is only used with --limit-read auto[:MAX]\n");
  // Nothing was backed up by any of them.
  auto list = bv({"--json", "list"});
  ASSERT_EQ(list.exit_status, 0) << list.err;
  EXPECT_TRUE(json::parse(list.out)["generations"].empty());
}

TEST_F(LimitsCliTest, AnUploadLimitOnADirectoryRepositoryIsIgnoredWithAWarning) {
  init_repo();
  const std::string dev = make_device("a.img", 1 << 20, 5);
  std::vector<std::string> args = {"--json", "backup", dev, "--limit-upload", "5"};
  for (const auto& a : diff_storage_args()) args.push_back(a);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "warning: --limit-upload 5: " + repo_ +
                       " is not object storage; the limit applies only to s3: repositories and is ignored\n");
  EXPECT_TRUE(json::parse(r.out)["upload_limit"].is_null());
}

TEST_F(LimitsCliTest, AJobsLimitsComeFromTheConfigAndTheLogLineSaysHowLongItWaited) {
  init_repo();
  const std::string dev = make_device("a.img", 4 << 20, 6);
  const std::string config = dir_ / "blkvault.toml", log = dir_ / "blkvault.log";
  std::ofstream(config) << "module = \"" << sim_ << "\"\n[repository]\npath = \"" << repo_ << "\"\n"
                        << "[diff-storage]\nsize = \"4M\"\nlimit = \"16M\"\n"
                        << "[report]\nlog-file = \"" << log << "\"\nsyslog = false\n"
                        << "[limits]\nread = 1\n"
                        << "[job.nightly]\ndevices = [\"" << dev << "\"]\nlimits = { read = 1000 }\n";
  auto r = bv({"--json", "run", "nightly", "--config", config});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["backup"]["read_limit"]["limit"], "1000");  // the job's, over the global 1 MB/s
  EXPECT_EQ(j["backup"]["read_limit"]["throttled_s"], 0.0);
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  EXPECT_TRUE(std::regex_search(last, std::regex(R"(\]: job nightly: success: generation 1 committed: 1 device\(s\), )"
                                                 R"(read 4\.0 MiB, .* stored, in [0-9.]+s, reads throttled 0\.00s$)")))
      << last;
}

class S3LimitsCliTest : public BackupCliTest {
 protected:
  void SetUp() override {
    std::string why;
    gw_ = CephGateway::get(&why);
    if (gw_ == nullptr) GTEST_SKIP() << why;
    repo_ = gw_->repo_url(gw_->new_bucket(), "limited");
  }
  CephGateway* gw_ = nullptr;
};

TEST_F(S3LimitsCliTest, ABackupIntoObjectStorageNeverUploadsFasterThanItsLimit) {
  init_repo();
  const std::string dev = make_device("a.img", 8 << 20, 8);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = backup_ok({dev}, {"--limit-upload", "4"});
  const double wall = seconds_since(t0);
  const json& limit = r["upload_limit"];
  ASSERT_TRUE(limit.is_object()) << r.dump();
  EXPECT_EQ(limit["limit"], "4");
  EXPECT_EQ(limit["bytes_per_s"], 4e6);
  EXPECT_TRUE(r["read_limit"].is_null());
  // Every stored byte went up through the limit (the manifest besides): no
  // faster than 4 MB/s beyond its 200 KB burst.
  const double stored = r["stored_bytes"].get<double>();
  ASSERT_GT(stored, 4e6);
  const double floor_s = (stored - 0.2e6) / 4e6;
  EXPECT_GE(r["duration_s"].get<double>(), floor_s);
  EXPECT_LT(wall, 3 * floor_s + 15);
  EXPECT_GT(limit["throttled_s"].get<double>(), 0);
  std::printf("stored %.2f MB in %.3f s under --limit-upload 4, uploads throttled %.3f s\n", stored / 1e6,
              r["duration_s"].get<double>(), limit["throttled_s"].get<double>());
  EXPECT_TRUE(restore_bytes("1", dev) == read_whole(dev));
}

}  // namespace
}  // namespace blkvault::test
