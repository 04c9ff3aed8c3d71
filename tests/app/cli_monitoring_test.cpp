// Monitoring through the real executable on the simulated module (issue 13):
// the Prometheus textfiles of `run`, `backup` and `verify` (docs/METRICS.md),
// read back with a parser of this test's own, per scenario: a success (values
// equal to the backup's JSON report), a failure (the last success kept), a CBT
// reset (the full read's reason), a snapshot overflow, verify's damage count,
// the atomic write; and the on-success/on-failure commands (the JSON on stdin,
// the environment, the mail script with a stand-in sendmail), whose message,
// the log's outcome line and the exit status say the same thing.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// One textfile: "name{k="v",...}" (labels sorted by name) -> value. Every
// sample must follow the "# TYPE" line of its metric, which follows its
// "# HELP" line; anything else fails the test.
struct Prom {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // metric -> gauge|counter

  bool has(const std::string& key) const { return samples.count(key) != 0; }
  double at(const std::string& key) const {
    auto it = samples.find(key);
    EXPECT_NE(it, samples.end()) << "no sample " << key;
    return it == samples.end() ? -1 : it->second;
  }
  // The keys of every sample of `metric`.
  std::vector<std::string> series(const std::string& metric) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : samples) {
      if (k.substr(0, k.find('{')) == metric) out.push_back(k);
    }
    return out;
  }
};

Prom parse_prom(const std::string& text) {
  Prom p;
  std::string help_of, type_of;
  std::istringstream in(text);
  std::string line;
  static const std::regex help(R"(^# HELP ([a-z_]+) \S.*$)");
  static const std::regex type(R"(^# TYPE ([a-z_]+) (gauge|counter)$)");
  static const std::regex sample(R"(^([a-z_]+)(\{(.*)\})? (\S+)$)");
  static const std::regex label(R"re(([a-z_]+)="((?:[^"\\]|\\.)*)"(,|$))re");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, help)) {
      help_of = m[1];
    } else if (std::regex_match(line, m, type)) {
      EXPECT_EQ(m[1], help_of) << "TYPE without HELP: " << line;
      type_of = m[1];
      p.types[m[1]] = m[2];
    } else if (std::regex_match(line, m, sample)) {
      const std::string name = m[1];
      EXPECT_EQ(name, type_of) << "sample outside its metric's block: " << line;
      std::map<std::string, std::string> labels;
      const std::string body = m[3];
      size_t consumed = 0;
      for (std::sregex_iterator it(body.begin(), body.end(), label), end; it != end; ++it) {
        EXPECT_EQ(static_cast<size_t>(it->position()), consumed) << line;
        consumed = it->position() + it->length();
        labels[(*it)[1]] = (*it)[2];
      }
      EXPECT_EQ(consumed, body.size()) << "bad labels: " << line;
      std::string key = name + "{";
      for (const auto& [k, v] : labels) key += (key.back() == '{' ? "" : ",") + k + "=\"" + v + "\"";
      key += "}";
      EXPECT_EQ(p.samples.count(key), 0u) << "duplicate " << key;
      p.samples[key] = std::stod(m[4]);
    } else {
      ADD_FAILURE() << "unexpected line: " << line;
    }
  }
  return p;
}

double unix_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count() / 1000.0;
}

std::string promtool() {
  for (const char* p : {"/usr/bin/promtool", "/usr/local/bin/promtool"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

std::string host() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

class MonitoringCliTest : public BackupCliTest {
 protected:
  static constexpr uint64_t kDeviceSize = 4 << 20;

  std::string config_ = dir_ / "blkvault.toml";
  std::string log_ = dir_ / "blkvault.log";
  std::string metrics_ = dir_ / "metrics";

  void SetUp() override { fs::create_directories(metrics_); }

  void write_config(const std::string& jobs, const std::string& report_extra = "") {
    std::ofstream(config_) << "module = \"" << sim_ << "\"\n"
                           << "[repository]\npath = \"" << repo_ << "\"\n"
                           << "[diff-storage]\nsize = \"4M\"\nlimit = \"16M\"\n"
                           << "[report]\nlog-file = \"" << log_ << "\"\nsyslog = false\n"
                           << report_extra << "[metrics]\ntextfile-dir = \"" << metrics_ << "\"\n"
                           << jobs;
  }
  CliRun run(const std::string& job, const std::vector<std::string>& extra = {},
             const std::vector<std::string>& env = {}) {
    std::vector<std::string> args = extra;
    args.insert(args.end(), {"run", job, "--config", config_});
    return bv(args, "", env);
  }
  CliRun backup(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> a = {"--json", "--metrics-dir", metrics_, "backup"};
    a.insert(a.end(), args.begin(), args.end());
    for (const auto& d : diff_storage_args()) a.push_back(d);
    return bv(a, "", env);
  }
  Prom prom(const std::string& name) {
    const std::string path = metrics_ + "/" + name;
    EXPECT_TRUE(fs::exists(path)) << path;
    const std::string text = read_whole(path);
    // promtool's own linter, where it is installed (scripts/install-deps).
    if (!promtool().empty()) {
      const std::string out = dir_ / "promtool.out";
      const int st = std::system((promtool() + " check metrics < '" + path + "' > '" + out + "' 2>&1").c_str());
      EXPECT_EQ(st, 0) << read_whole(out) << text;
      EXPECT_EQ(read_whole(out), "") << text;
    }
    return parse_prom(text);
  }
  std::set<std::string> metrics_files() {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(metrics_)) names.insert(e.path().filename().string());
    return names;
  }
  // The log's outcome lines ("job JOB: success: …"), without the time and pid.
  std::vector<std::string> outcome_lines() {
    std::vector<std::string> out;
    std::ifstream in(log_);
    std::string line;
    static const std::regex outcome(R"(^\S+ blkvault\[\d+\]: (job [^:]+: (success|failure|skipped): .*)$)");
    std::smatch m;
    while (std::getline(in, line)) {
      if (std::regex_match(line, m, outcome)) out.push_back(m[1]);
    }
    return out;
  }
  std::string job(const std::string& name) { return "{job=\"" + name + "\"}"; }
  std::string dev(const std::string& name, const std::string& device) {
    return "{device=\"" + device + "\",job=\"" + name + "\"}";
  }
};

TEST_F(MonitoringCliTest, ASuccessfulRunWritesMetricsEqualToItsBackupReport) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 31);
  write_config("[job.nightly]\ndevices = [\"" + a + "\"]\n");
  const double before = unix_now();
  auto r = run("nightly", {"--json"});
  const double after = unix_now();
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const json d = json::parse(r.out)["backup"]["devices"][0];

  EXPECT_EQ(metrics_files(), std::set<std::string>{"blkvault_nightly.prom"}) << "no temp file left";
  struct stat st {};
  ASSERT_EQ(::stat((metrics_ + "/blkvault_nightly.prom").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  Prom p = prom("blkvault_nightly.prom");
  const std::string J = job("nightly"), D = dev("nightly", a);
  EXPECT_EQ(p.at("blkvault_last_run_success" + J), 1);
  EXPECT_EQ(p.at("blkvault_last_run_exit_status" + J), 0);
  EXPECT_EQ(p.at("blkvault_runs_total{job=\"nightly\",outcome=\"success\"}"), 1);
  EXPECT_EQ(p.at("blkvault_runs_total{job=\"nightly\",outcome=\"failure\"}"), 0);
  EXPECT_EQ(p.types["blkvault_runs_total"], "counter");
  EXPECT_EQ(p.types["blkvault_last_run_success"], "gauge");
  const double ts = p.at("blkvault_last_success_timestamp_seconds" + J);
  EXPECT_GE(ts, before - 0.001);
  EXPECT_LE(ts, after + 0.001);
  EXPECT_EQ(ts, p.at("blkvault_last_run_timestamp_seconds" + J));
  EXPECT_EQ(p.at("blkvault_last_success_generation" + J), 1);
  EXPECT_GT(p.at("blkvault_last_success_duration_seconds" + J), 0);
  EXPECT_LE(p.at("blkvault_last_success_duration_seconds" + J), after - before);
  const double dts = p.at("blkvault_device_last_success_timestamp_seconds" + D);
  EXPECT_GE(dts, before - 0.001);
  EXPECT_LE(dts, ts);

  // The device's figures are the report's, to the byte and the digit.
  EXPECT_EQ(p.at("blkvault_device_size_bytes" + D), d["size_bytes"].get<double>());
  EXPECT_EQ(p.at("blkvault_device_changed_bytes" + D), d["changed_bytes"].get<double>());
  EXPECT_EQ(p.at("blkvault_device_read_bytes" + D), d["read_bytes"].get<double>());
  EXPECT_EQ(p.at("blkvault_device_new_bytes" + D), d["new_bytes"].get<double>());
  EXPECT_EQ(p.at("blkvault_device_stored_bytes" + D), d["stored_bytes"].get<double>());
  EXPECT_EQ(p.at("blkvault_device_last_success_duration_seconds" + D), d["duration_s"].get<double>());
  EXPECT_EQ(d["read_bytes"], kDeviceSize);
  EXPECT_EQ(d["reason"], "no earlier backup of this device");
  EXPECT_EQ(p.series("blkvault_device_full_read"),
            std::vector<std::string>{"blkvault_device_full_read{device=\"" + a + "\",job=\"nightly\",reason=\"no_baseline\"}"});
  EXPECT_EQ(p.at("blkvault_device_full_read{device=\"" + a + "\",job=\"nightly\",reason=\"no_baseline\"}"), 1);
  EXPECT_EQ(p.at("blkvault_device_cbt_resets_total" + D), 0);
  EXPECT_EQ(p.at("blkvault_snapshot_overflows_total" + D), 0);

  // The repository as `status` sees it.
  auto status = bv({"--json", "status"});
  ASSERT_EQ(status.exit_status, 0) << status.err;
  const json s = json::parse(status.out)["repository"];
  const std::string R = "{job=\"nightly\",repository=\"" + repo_ + "\"}";
  EXPECT_EQ(p.at("blkvault_repository_size_bytes" + R), s["pack_bytes"].get<double>());
  EXPECT_EQ(p.at("blkvault_repository_packs" + R), s["packs"].get<double>());
  EXPECT_EQ(p.at("blkvault_repository_chunks" + R), s["chunks"].get<double>());
  EXPECT_EQ(p.at("blkvault_repository_generations{job=\"nightly\",repository=\"" + repo_ + "\",state=\"committed\"}"),
            1);
  EXPECT_EQ(p.at("blkvault_repository_generations{job=\"nightly\",repository=\"" + repo_ + "\",state=\"failed\"}"), 0);
}

TEST_F(MonitoringCliTest, AFailedRunKeepsTheLastSuccessAndReplacesTheFileAtomically) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 32);
  write_config("[job.nightly]\ndevices = [\"" + a + "\"]\n");
  ASSERT_EQ(run("nightly").exit_status, 0);
  const std::string path = metrics_ + "/blkvault_nightly.prom";
  const Prom first = prom("blkvault_nightly.prom");
  struct stat st1 {};
  ASSERT_EQ(::stat(path.c_str(), &st1), 0);

  ASSERT_EQ(bv({"-q", "sim", "fault", "--device", a, "--read-error", "1M:4096"}).exit_status, 0);
  sim_write(a, 1 << 20, "changed, and unreadable in the snapshot");
  auto r = run("nightly");
  ASSERT_EQ(r.exit_status, 1) << r.err;
  EXPECT_EQ(metrics_files(), std::set<std::string>{"blkvault_nightly.prom"}) << "no temp file left";
  struct stat st2 {};
  ASSERT_EQ(::stat(path.c_str(), &st2), 0);
  EXPECT_NE(st1.st_ino, st2.st_ino) << "replaced by a rename, not rewritten in place";
  Prom p = prom("blkvault_nightly.prom");
  const std::string J = job("nightly"), D = dev("nightly", a);
  EXPECT_EQ(p.at("blkvault_last_run_success" + J), 0);
  EXPECT_EQ(p.at("blkvault_last_run_exit_status" + J), 1);
  EXPECT_GT(p.at("blkvault_last_run_timestamp_seconds" + J), first.at("blkvault_last_run_timestamp_seconds" + J));
  EXPECT_EQ(p.at("blkvault_runs_total{job=\"nightly\",outcome=\"success\"}"), 1);
  EXPECT_EQ(p.at("blkvault_runs_total{job=\"nightly\",outcome=\"failure\"}"), 1);
  // Every last-success series is the first run's, unchanged.
  for (const std::string& key : std::vector<std::string>{
           "blkvault_last_success_timestamp_seconds" + J, "blkvault_last_success_duration_seconds" + J,
        "blkvault_last_success_generation" + J, "blkvault_device_last_success_timestamp_seconds" + D,
        "blkvault_device_last_success_duration_seconds" + D, "blkvault_device_read_bytes" + D,
        "blkvault_device_new_bytes" + D, "blkvault_device_stored_bytes" + D, "blkvault_device_changed_bytes" + D}) {
    EXPECT_EQ(p.at(key), first.at(key)) << key;
  }
  EXPECT_EQ(p.at("blkvault_repository_generations{job=\"nightly\",repository=\"" + repo_ + "\",state=\"committed\"}"),
            1);
  EXPECT_EQ(p.at("blkvault_repository_generations{job=\"nightly\",repository=\"" + repo_ + "\",state=\"failed\"}"), 1);
  EXPECT_EQ(p.at("blkvault_snapshot_overflows_total" + D), 0) << "a read error is no overflow";
}

TEST_F(MonitoringCliTest, ACbtResetIsRecordedAsAFullReadWithItsReason) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 33);
  write_config("[job.nightly]\ndevices = [\"" + a + "\"]\n");
  ASSERT_EQ(run("nightly").exit_status, 0);
  sim_write(a, 4096, "an incremental change");
  ASSERT_EQ(run("nightly").exit_status, 0);
  const std::string D = dev("nightly", a);
  Prom p = prom("blkvault_nightly.prom");
  EXPECT_EQ(p.series("blkvault_device_full_read"),
            std::vector<std::string>{"blkvault_device_full_read{device=\"" + a + "\",job=\"nightly\",reason=\"\"}"});
  EXPECT_EQ(p.at("blkvault_device_full_read{device=\"" + a + "\",job=\"nightly\",reason=\"\"}"), 0);
  EXPECT_EQ(p.at("blkvault_device_read_bytes" + D), kChunk);

  ASSERT_EQ(bv({"-q", "sim", "drop-state"}).exit_status, 0);
  sim_write(a, 8192, "after the module reload");
  auto r = run("nightly", {"--json"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["backup"]["devices"][0]["reason"], "CBT generation changed");
  p = prom("blkvault_nightly.prom");
  const std::string full = "blkvault_device_full_read{device=\"" + a + "\",job=\"nightly\",reason=\"cbt_generation_changed\"}";
  EXPECT_EQ(p.series("blkvault_device_full_read"), std::vector<std::string>{full});
  EXPECT_EQ(p.at(full), 1);
  EXPECT_EQ(p.at("blkvault_device_cbt_resets_total" + D), 1);
  EXPECT_EQ(p.at("blkvault_device_read_bytes" + D), kDeviceSize);
  EXPECT_EQ(p.at("blkvault_runs_total{job=\"nightly\",outcome=\"success\"}"), 3);
}

TEST_F(MonitoringCliTest, BackupWritesUnderItsMetricsJobAndCountsASnapshotOverflow) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 34);
  auto ok = backup({"--metrics-job", "system", a});
  ASSERT_EQ(ok.exit_status, 0) << ok.err;
  EXPECT_EQ(metrics_files(), std::set<std::string>{"blkvault_system.prom"});
  const json d = json::parse(ok.out)["devices"][0];
  const std::string J = job("system"), D = dev("system", a);
  Prom first = prom("blkvault_system.prom");
  EXPECT_EQ(first.at("blkvault_last_run_success" + J), 1);
  EXPECT_EQ(first.at("blkvault_last_success_generation" + J), 1);
  EXPECT_EQ(first.at("blkvault_device_read_bytes" + D), d["read_bytes"].get<double>());
  EXPECT_EQ(first.at("blkvault_device_stored_bytes" + D), d["stored_bytes"].get<double>());
  EXPECT_EQ(first.at("blkvault_device_last_success_duration_seconds" + D), d["duration_s"].get<double>());

  // While the snapshot is held, writes overflow its capped difference storage.
  std::mt19937_64 rng(34);
  const std::string big = dir_ / "big";
  { std::ofstream(big, std::ios::binary) << random_bytes(rng, 4 << 20); }
  const std::string hook = BLKVAULT_BINARY " -q sim fault --storage-limit 256K && " BLKVAULT_BINARY " -q sim write " +
                           a + " --offset 0 < " + big;
  auto r = backup({"--metrics-job", "system", a}, {"BLKVAULT_SIM_AFTER_TAKE=" + hook});
  ASSERT_EQ(r.exit_status, 1);
  EXPECT_NE(r.err.find("is corrupted (difference storage overflow or I/O error)"), std::string::npos) << r.err;
  Prom p = prom("blkvault_system.prom");
  EXPECT_EQ(p.at("blkvault_snapshot_overflows_total" + D), 1);
  EXPECT_EQ(p.at("blkvault_last_run_success" + J), 0);
  EXPECT_EQ(p.at("blkvault_last_run_exit_status" + J), 1);
  EXPECT_EQ(p.at("blkvault_last_success_timestamp_seconds" + J), first.at("blkvault_last_success_timestamp_seconds" + J));
  EXPECT_EQ(p.at("blkvault_device_read_bytes" + D), first.at("blkvault_device_read_bytes" + D));
  EXPECT_EQ(p.at("blkvault_device_cbt_resets_total" + D), 0);

  // The default job label, and one that could not name a file.
  ASSERT_EQ(bv({"-q", "sim", "fault", "--clear"}).exit_status, 0);
  ASSERT_EQ(backup({a}).exit_status, 0);
  EXPECT_EQ(metrics_files(), (std::set<std::string>{"blkvault_backup.prom", "blkvault_system.prom"}));
  EXPECT_EQ(prom("blkvault_backup.prom").at("blkvault_last_run_success" + job("backup")), 1);
  auto bad = backup({"--metrics-job", "../x", a});
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_EQ(bad.err, "blkvault: --metrics-job ../x: may only have letters, digits, '-' and '_' (at most 64)\n");
}

TEST_F(MonitoringCliTest, VerifyWritesItsResultAndTheDamageItFound) {
  init_repo();
  const std::string a = make_device("a.img", 2 << 20, 35);
  backup_ok({a});
  auto clean = bv({"--metrics-dir", metrics_, "verify"});
  ASSERT_EQ(clean.exit_status, 0) << clean.err;
  const std::string file = "blkvault_verify_" + std::regex_replace(repo_.substr(1), std::regex("[^A-Za-z0-9]"), "_") +
                           ".prom";
  EXPECT_EQ(metrics_files(), std::set<std::string>{file});
  const std::string meta = "{data=\"false\",repository=\"" + repo_ + "\"}";
  const std::string data = "{data=\"true\",repository=\"" + repo_ + "\"}";
  Prom p = prom(file);
  EXPECT_EQ(p.at("blkvault_verify_damaged_chunks" + meta), 0);
  EXPECT_EQ(p.at("blkvault_verify_problems" + meta), 0);
  const double meta_ts = p.at("blkvault_verify_last_timestamp_seconds" + meta);

  // Flip a byte in the middle of every pack: --data finds each damaged chunk.
  int flipped = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(repo_) / "packs")) {
    if (!e.is_regular_file()) continue;
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(fs::file_size(e.path()) / 2));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(fs::file_size(e.path()) / 2));
    f.put(static_cast<char>(c ^ 0x5a));
    ++flipped;
  }
  ASSERT_GT(flipped, 0);
  auto damaged = bv({"--json", "--metrics-dir", metrics_, "verify", "--data"});
  ASSERT_EQ(damaged.exit_status, 3) << damaged.err;
  const json v = json::parse(damaged.out);
  ASSERT_GT(v["damage"].size(), 0u) << v.dump();
  p = prom(file);
  EXPECT_EQ(p.at("blkvault_verify_damaged_chunks" + data), static_cast<double>(v["damage"].size()));
  EXPECT_EQ(p.at("blkvault_verify_problems" + data), static_cast<double>(v["problems"].size()));
  EXPECT_GT(p.at("blkvault_verify_last_timestamp_seconds" + data), meta_ts);
  EXPECT_EQ(p.at("blkvault_verify_last_timestamp_seconds" + meta), meta_ts) << "the metadata verify's series stay";
  EXPECT_EQ(p.at("blkvault_verify_damaged_chunks" + meta), 0);
}

TEST_F(MonitoringCliTest, AMetricsDirectoryThatCannotBeWrittenIsAWarningNotAFailure) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 36);
  write_config("[job.nightly]\ndevices = [\"" + a + "\"]\n");
  const std::string missing = dir_ / "no-such-dir";
  auto r = run("nightly", {"--metrics-dir", missing});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  const std::string warning = "warning: job nightly: writing the metrics file " + missing +
                              "/blkvault_nightly.prom: opening " + missing + "/blkvault_nightly.prom.tmp-";
  EXPECT_EQ(r.err.rfind(warning, 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(fs::exists(missing));
  EXPECT_TRUE(metrics_files().empty()) << "--metrics-dir replaces the file's textfile-dir";
  EXPECT_EQ(outcome_lines().size(), 1u);
  EXPECT_EQ(outcome_lines().back().rfind("job nightly: success: ", 0), 0u);
}

TEST_F(MonitoringCliTest, TheNotificationCommandsGetTheOutcomeThatTheLogAndExitStatusSay) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 37);
  const std::string ok_json = dir_ / "ok.json", ok_env = dir_ / "ok.env";
  const std::string bad_json = dir_ / "bad.json", bad_env = dir_ / "bad.env";
  auto recorder = [](const std::string& json_file, const std::string& env_file) {
    return "[\"sh\", \"-c\", \"cat > " + json_file + "; env | grep ^BLKVAULT_ | sort > " + env_file + "\"]\n";
  };
  write_config("[job.nightly]\ndevices = [\"" + a + "\"]\n",
               "on-success = " + recorder(ok_json, ok_env) + "on-failure = " + recorder(bad_json, bad_env));

  auto ok = run("nightly");
  ASSERT_EQ(ok.exit_status, 0) << ok.err;
  EXPECT_FALSE(fs::exists(bad_json));
  json j = json::parse(read_whole(ok_json));
  EXPECT_EQ(j["job"], "nightly");
  EXPECT_EQ(j["status"], "success");
  EXPECT_EQ(j["exit_status"], ok.exit_status);
  EXPECT_TRUE(j["error"].is_null());
  EXPECT_EQ(j["generation"], 1);
  EXPECT_EQ(j["devices"], json::array({a}));
  EXPECT_EQ(j["log_file"], log_);
  EXPECT_EQ(j["host"], host());
  EXPECT_EQ(j["backup"]["generation"], 1);
  EXPECT_EQ(j["backup"]["devices"][0]["read_bytes"], kDeviceSize);
  // One outcome, three ways: the log line, stdout, the JSON's message.
  ASSERT_EQ(outcome_lines().size(), 1u);
  EXPECT_EQ(outcome_lines().back(), "job nightly: " + j["message"].get<std::string>());
  EXPECT_EQ(j["message"].get<std::string>().rfind("success: generation 1 committed: ", 0), 0u) << j.dump();
  EXPECT_EQ(ok.out, "job nightly: " + j["message"].get<std::string>() + "\n");
  const std::string env = read_whole(ok_env);
  for (const std::string& line : std::vector<std::string>{
           "BLKVAULT_HOOK=on-success\n", "BLKVAULT_STATUS=success\n", "BLKVAULT_EXIT_STATUS=0\n", "BLKVAULT_ERROR=\n",
        "BLKVAULT_GENERATION=1\n", "BLKVAULT_JOB=nightly\n", "BLKVAULT_LOG_FILE=" + log_ + "\n",
        "BLKVAULT_MESSAGE=" + j["message"].get<std::string>() + "\n"}) {
    EXPECT_NE(env.find(line), std::string::npos) << line << " in\n" << env;
  }

  fs::remove(ok_json);
  ASSERT_EQ(bv({"-q", "sim", "fault", "--device", a, "--read-error", "1M:4096"}).exit_status, 0);
  sim_write(a, 1 << 20, "unreadable");
  auto bad = run("nightly");
  ASSERT_EQ(bad.exit_status, 1);
  EXPECT_FALSE(fs::exists(ok_json));
  j = json::parse(read_whole(bad_json));
  EXPECT_EQ(j["status"], "failure");
  EXPECT_EQ(j["exit_status"], bad.exit_status);
  EXPECT_TRUE(j["generation"].is_null());
  EXPECT_TRUE(j["backup"].is_null());
  EXPECT_EQ(bad.err, "blkvault: job nightly: " + j["error"].get<std::string>() + "\n");
  EXPECT_EQ(j["message"], "failure: " + j["error"].get<std::string>());
  ASSERT_EQ(outcome_lines().size(), 2u);
  EXPECT_EQ(outcome_lines().back(), "job nightly: " + j["message"].get<std::string>());
  const std::string env2 = read_whole(bad_env);
  for (const std::string& line : std::vector<std::string>{"BLKVAULT_HOOK=on-failure\n", "BLKVAULT_STATUS=failure\n",
                                 "BLKVAULT_EXIT_STATUS=1\n", "BLKVAULT_ERROR=" + j["error"].get<std::string>() + "\n"}) {
    EXPECT_NE(env2.find(line), std::string::npos) << line << " in\n" << env2;
  }
}

TEST_F(MonitoringCliTest, AFailingOnSuccessCommandIsAWarningAndTheRunStillSucceeds) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 39);
  write_config("[job.nightly]\ndevices = [\"" + a + "\"]\n", "on-success = \"echo no MTA >&2; exit 3\"\n");
  auto r = run("nightly");
  EXPECT_EQ(r.exit_status, 0);
  EXPECT_EQ(r.err, "warning: job nightly: the on-success command \"echo no MTA >&2; exit 3\" exited with status 3\n");
  ASSERT_EQ(outcome_lines().size(), 1u);
  EXPECT_EQ(outcome_lines().back().rfind("job nightly: success: generation 1 committed: ", 0), 0u);
  const std::string log = read_whole(log_);
  EXPECT_NE(log.find("job nightly: on-success command: no MTA\n"), std::string::npos) << log;
  EXPECT_EQ(prom("blkvault_nightly.prom").at("blkvault_last_run_success" + job("nightly")), 1);
}

TEST_F(MonitoringCliTest, TheMailScriptSendsTheOutcomeThroughSendmail) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 38);
  const std::string sendmail = dir_ / "sendmail", mail = dir_ / "mail", args = dir_ / "args";
  std::ofstream(sendmail) << "#!/bin/sh\necho \"$@\" > " << args << "\ncat > " << mail << "\n";
  fs::permissions(sendmail, fs::perms::owner_all);
  const std::string script = std::string(BLKVAULT_SOURCE_DIR) + "/config/notify-mail.sh";
  write_config("[job.nightly]\ndevices = [\"" + a + "\"]\n",
               "on-success = [\"" + script + "\", \"ops@example.com\"]\n" + "on-failure = [\"" + script +
                   "\", \"ops@example.com\", \"root\"]\n");
  const std::vector<std::string> env = {"SENDMAIL=" + sendmail};

  ASSERT_EQ(run("nightly", {}, env).exit_status, 0);
  EXPECT_EQ(read_whole(args), "-t -oi\n");
  std::string m = read_whole(mail);
  EXPECT_EQ(m.rfind("To: ops@example.com\nSubject: blkvault: job nightly succeeded on " + host() +
                        "\nContent-Type: text/plain; charset=UTF-8\nAuto-Submitted: auto-generated\n\n",
                    0),
            0u)
      << m;
  EXPECT_NE(m.find("\nOutcome:     success: generation 1 committed: "), std::string::npos) << m;
  EXPECT_NE(m.find("\nGeneration:  1\n"), std::string::npos) << m;
  EXPECT_EQ(m.find("The last lines of"), std::string::npos) << m;

  ASSERT_EQ(bv({"-q", "sim", "fault", "--device", a, "--read-error", "1M:4096"}).exit_status, 0);
  sim_write(a, 1 << 20, "unreadable");
  auto bad = run("nightly", {}, env);
  ASSERT_EQ(bad.exit_status, 1);
  m = read_whole(mail);
  EXPECT_EQ(m.rfind("To: ops@example.com, root\nSubject: blkvault: job nightly FAILED on " + host() +
                        " (exit status 1)\n",
                    0),
            0u)
      << m;
  const std::string error = bad.err.substr(std::string("blkvault: job nightly: ").size());
  EXPECT_NE(m.find("\nOutcome:     failure: " + error), std::string::npos) << m;
  EXPECT_NE(m.find("\nThe last lines of " + log_ + " for this job:\n"), std::string::npos) << m;
  EXPECT_NE(m.find("job nightly: failure: " + error), std::string::npos) << "the log's outcome line: " << m;
  const size_t at = m.find("\nThe outcome as JSON:\n");
  ASSERT_NE(at, std::string::npos) << m;
  const json j = json::parse(m.substr(at + std::string("\nThe outcome as JSON:\n").size()));
  EXPECT_EQ(j["status"], "failure");
  EXPECT_EQ(j["exit_status"], 1);
  // The mail command's own output and outcome are in the log, after the outcome line.
  EXPECT_NE(read_whole(log_).find("job nightly: on-failure command [\"" + script + "\", \"ops@example.com\", \"root\"] "
                                  "exited with status 0 in "),
            std::string::npos)
      << read_whole(log_);
}

}  // namespace
}  // namespace blkvault::test
