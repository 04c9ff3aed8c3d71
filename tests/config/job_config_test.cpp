// config/job_config.h: a full file read into exact values, and every kind of
// problem reported with its file, line, column and key.
#include "config/job_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/s3_credentials.h"
#include "temp_dir.h"

namespace blkvault::config {
namespace {

// Every problem of `text`, as printed by `config check`.
std::vector<std::string> problems_of(std::string_view text) {
  CheckResult r = check_text(text, "t.toml");
  std::vector<std::string> out;
  for (const auto& p : r.problems) out.push_back(to_string(p));
  return out;
}

using Lines = std::vector<std::string>;

constexpr std::string_view kMinimal = "[repository]\npath = \"/srv/repo\"\n";

TEST(JobConfig, ReadsEveryKeyOfAFullFile) {
  CheckResult r = check_text(R"(module = "sim:/var/tmp/sim"
state-dir = "/var/lib/bv"
lock-wait = "1h30m"

[repository]
path = "/srv/repo"
chunk-size = "256K"
compression = 9
pack-size = "128M"

[diff-storage]
dir = "/var/diff"
size = "2G"
limit = 34359738368

[report]
log-file = "/var/log/bv.log"
syslog = false
on-failure = "mail root"

[job.web]
devices = ["/dev/sda1", "/dev/sdb"]
schedule = "Mon..Fri 02:00"
lock-wait = 60
module = "/dev/veeamblksnap"
retention = { keep-last = 2, keep-hourly = 3, keep-daily = 4, keep-weekly = 5, keep-monthly = 6, keep-yearly = 7 }
hooks.pre = ["fsfreeze", "-f", "/srv"]
hooks.post-snapshot = ["fsfreeze", "-u", "/srv"]
hooks.post = "echo done"
hooks.timeout = "45s"
diff-storage.limit = "64G"
report.on-failure = ["/usr/bin/page", "web"]

[job.db]
devices = ["/dev/vg/db"]
schedule = "*/30 * * * *"
)",
                             "full.toml");
  ASSERT_TRUE(r.ok()) << to_string(r.problems.front());
  const Config& c = r.config;
  EXPECT_EQ(c.file, "full.toml");
  EXPECT_EQ(c.module_spec, "sim:/var/tmp/sim");
  EXPECT_EQ(c.state_dir, "/var/lib/bv");
  EXPECT_EQ(c.lock_wait_s, 5400u);
  EXPECT_EQ(c.repository.path, "/srv/repo");
  EXPECT_EQ(c.repository.chunk_size_bytes, 256u << 10);
  EXPECT_EQ(c.repository.compression_level, 9);
  EXPECT_EQ(c.repository.pack_size_bytes, 128u << 20);
  EXPECT_EQ(c.diff_storage.dir, "/var/diff");
  EXPECT_EQ(c.diff_storage.size_bytes, 2ull << 30);
  EXPECT_EQ(c.diff_storage.limit_bytes, 32ull << 30);
  EXPECT_EQ(c.report.log_file, "/var/log/bv.log");
  EXPECT_FALSE(c.report.syslog);
  EXPECT_EQ(c.report.on_failure.shell, "mail root");
  EXPECT_TRUE(c.report.on_failure.argv.empty());

  ASSERT_EQ(c.jobs.size(), 2u);
  const JobConfig& web = c.jobs[0];  // file order, not alphabetical
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.devices, (Lines{"/dev/sda1", "/dev/sdb"}));
  ASSERT_TRUE(web.schedule);
  EXPECT_EQ(web.schedule->kind, Schedule::Kind::kCalendar);
  EXPECT_EQ(web.schedule->text, "Mon..Fri 02:00");
  EXPECT_EQ(web.lock_wait_s, 60u);
  EXPECT_EQ(web.module_spec, "/dev/veeamblksnap");
  ASSERT_TRUE(web.retention);
  EXPECT_EQ(web.retention->keep_last, 2u);
  EXPECT_EQ(web.retention->keep_hourly, 3u);
  EXPECT_EQ(web.retention->keep_daily, 4u);
  EXPECT_EQ(web.retention->keep_weekly, 5u);
  EXPECT_EQ(web.retention->keep_monthly, 6u);
  EXPECT_EQ(web.retention->keep_yearly, 7u);
  EXPECT_TRUE(web.retention->gc) << "gc runs after pruning unless the table says gc = false";
  EXPECT_EQ(web.hooks.pre.argv, (Lines{"fsfreeze", "-f", "/srv"}));
  EXPECT_TRUE(web.hooks.pre.shell.empty());
  EXPECT_EQ(web.hooks.post_snapshot.argv, (Lines{"fsfreeze", "-u", "/srv"}));
  EXPECT_EQ(web.hooks.post.shell, "echo done");
  EXPECT_EQ(web.hooks.timeout_s, 45u);
  EXPECT_EQ(web.diff_storage.dir, "/var/diff");           // inherited
  EXPECT_EQ(web.diff_storage.size_bytes, 2ull << 30);     // inherited
  EXPECT_EQ(web.diff_storage.limit_bytes, 64ull << 30);   // overridden
  EXPECT_EQ(web.report.log_file, "/var/log/bv.log");      // inherited
  EXPECT_FALSE(web.report.syslog);                        // inherited
  EXPECT_EQ(web.report.on_failure.argv, (Lines{"/usr/bin/page", "web"}));

  const JobConfig& db = c.jobs[1];
  EXPECT_EQ(db.name, "db");
  EXPECT_EQ(db.devices, (Lines{"/dev/vg/db"}));
  ASSERT_TRUE(db.schedule);
  EXPECT_EQ(db.schedule->kind, Schedule::Kind::kCron);
  EXPECT_EQ(db.schedule->cron.minutes.to_ullong(), (1ull << 0) | (1ull << 30));
  EXPECT_FALSE(db.retention);
  EXPECT_TRUE(db.hooks.pre.empty());
  EXPECT_EQ(db.hooks.timeout_s, 300u);
  EXPECT_EQ(db.module_spec, "sim:/var/tmp/sim");
  EXPECT_EQ(db.lock_wait_s, 5400u);
  EXPECT_EQ(db.report.on_failure.shell, "mail root");

  EXPECT_EQ(c.find_job("db"), &c.jobs[1]);
  EXPECT_EQ(c.find_job("nope"), nullptr);
}

TEST(JobConfig, AppliesDefaults) {
  CheckResult r = check_text(kMinimal, "min.toml");
  ASSERT_TRUE(r.ok()) << to_string(r.problems.front());
  const Config& c = r.config;
  EXPECT_EQ(c.module_spec, "/dev/veeamblksnap");
  EXPECT_EQ(c.state_dir, "/var/lib/blkvault");
  EXPECT_EQ(c.lock_wait_s, 0u);
  EXPECT_EQ(c.repository.chunk_size_bytes, 1u << 20);
  EXPECT_EQ(c.repository.compression_level, 3);
  EXPECT_EQ(c.repository.pack_size_bytes, 64u << 20);
  EXPECT_EQ(c.diff_storage.dir, "/var/lib/blkvault/diff");
  EXPECT_EQ(c.diff_storage.size_bytes, 1ull << 30);
  EXPECT_EQ(c.diff_storage.limit_bytes, 16ull << 30);
  EXPECT_EQ(c.report.log_file, "");
  EXPECT_TRUE(c.report.syslog);
  EXPECT_TRUE(c.report.on_failure.empty());
  EXPECT_TRUE(c.jobs.empty());
}

TEST(JobConfig, SimulatedModuleKeepsItsStateInsideItsDirectory) {
  CheckResult r = check_text("module = \"sim:/tmp/s\"\n[repository]\npath = \"/r\"\n", "t.toml");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.config.state_dir, "/tmp/s/client");
  EXPECT_EQ(r.config.diff_storage.dir, "/tmp/s/client/diff");
}

TEST(JobConfig, TomlSyntaxErrorGivesThePositionAndTomlsDescription) {
  EXPECT_EQ(problems_of("[repository]\npath = \n"),
            (Lines{"t.toml:2:8: Error while parsing key-value pair: expected value, saw '\\n'"}));
  EXPECT_EQ(problems_of("[repository]\npath = \"/a\"\npath = \"/b\"\n"),
            (Lines{"t.toml:3:8: Error while parsing key-value pair: cannot redefine existing string 'path'"}));
}

TEST(JobConfig, MissingRequiredKeysPointAtTheirTable) {
  EXPECT_EQ(problems_of(""), (Lines{"t.toml:1:1: repository: required table is missing"}));
  EXPECT_EQ(problems_of("[repository]\nchunk-size = \"1M\"\n\n[job.a]\nschedule = \"daily\"\n"),
            (Lines{"t.toml:1:1: repository.path: required key is missing",
                   "t.toml:4:1: job.a.devices: required key is missing"}));
}

TEST(JobConfig, UnknownKeysAreProblemsWithASuggestion) {
  EXPECT_EQ(problems_of(R"(modul = "/dev/veeamblksnap"
[repository]
path = "/r"
compresion = 3
[jobs.x]
devices = ["/dev/a"]
[job.a]
devices = ["/dev/a"]
keep-daily = 3
[job.a.retention]
keep-dayly = 7
keep-last = 1
[job.a.hooks]
pre-snapshot = "sync"
)"),
            (Lines{
                "t.toml:1:1: modul: unknown key 'modul' (did you mean 'module'?)",
                "t.toml:4:1: repository.compresion: unknown key 'compresion' (did you mean 'compression'?)",
                "t.toml:5:2: jobs: unknown key 'jobs' (did you mean 'job'?)",
                "t.toml:9:1: job.a.keep-daily: unknown key 'keep-daily'",
                "t.toml:11:1: job.a.retention.keep-dayly: unknown key 'keep-dayly' (did you mean 'keep-daily'?)",
                "t.toml:14:1: job.a.hooks.pre-snapshot: unknown key 'pre-snapshot'",
            }));
}

TEST(JobConfig, AMisspeltKeepRuleIsOneProblem) {
  EXPECT_EQ(problems_of("[repository]\npath = \"/r\"\n[job.a]\ndevices = [\"/dev/a\"]\n"
                        "retention = { keep-dayly = 7 }\n"),
            (Lines{"t.toml:5:15: job.a.retention.keep-dayly: unknown key 'keep-dayly' (did you mean 'keep-daily'?)"}));
}

TEST(JobConfig, RetentionMayPruneWithoutCollectingGarbage) {
  CheckResult r = check_text("[repository]\npath = \"/r\"\n[job.a]\ndevices = [\"/dev/a\"]\n"
                              "retention = { keep-daily = 7, gc = false }\n",
                              "t.toml");
  ASSERT_TRUE(r.problems.empty()) << to_string(r.problems[0]);
  ASSERT_TRUE(r.config.jobs[0].retention);
  EXPECT_EQ(r.config.jobs[0].retention->keep_daily, 7u);
  EXPECT_FALSE(r.config.jobs[0].retention->gc);
  EXPECT_EQ(problems_of("[repository]\npath = \"/r\"\n[job.a]\ndevices = [\"/dev/a\"]\n"
                        "retention = { keep-daily = 7, gc = \"no\" }\n"),
            (Lines{"t.toml:5:36: job.a.retention.gc: expected a boolean (true or false), got a string"}));
}

TEST(JobConfig, WrongTypesNameWhatWasExpected) {
  EXPECT_EQ(problems_of(R"(lock-wait = true
repository = "/srv/repo"
report = { syslog = "yes", on-failure = 3 }
[job.a]
devices = "/dev/sda"
schedule = 2
retention = [1]
hooks = { pre = ["sync", 1], post = [], timeout = 1.5 }
)"),
            (Lines{
                "t.toml:1:13: lock-wait: expected a duration such as \"30s\" or \"5m\", or seconds, got a boolean",
                "t.toml:2:14: repository: expected a table, got a string",
                "t.toml:3:21: report.syslog: expected a boolean (true or false), got a string",
                "t.toml:3:41: report.on-failure: expected a command: a string for /bin/sh or an array of strings, "
                "got an integer",
                "t.toml:5:11: job.a.devices: expected an array of device paths, such as [\"/dev/sda\"]",
                "t.toml:6:12: job.a.schedule: expected a string, got an integer",
                "t.toml:7:13: job.a.retention: expected a table, got an array",
                "t.toml:8:26: job.a.hooks.pre[1]: expected a string, got an integer",
                "t.toml:8:37: job.a.hooks.post: the command is empty",
                "t.toml:8:51: job.a.hooks.timeout: expected a duration such as \"30s\" or \"5m\", or seconds, got a "
                "floating-point number",
            }));
}

TEST(JobConfig, BadValuesSayWhatIsWrong) {
  EXPECT_EQ(problems_of(R"(module = "veeamblksnap"
state-dir = "var/lib"
lock-wait = "10 minutes"
[repository]
path = "/r"
chunk-size = "100K"
compression = 22
pack-size = "8G"
[diff-storage]
size = "20G"
limit = "16X"
[job.a]
devices = ["/dev/a"]
diff-storage = { size = "32G" }
[report]
log-file = ""
)"),
            (Lines{
                "t.toml:1:10: module: 'veeamblksnap' is neither an absolute device path such as '/dev/veeamblksnap' "
                "nor 'sim:DIR' with an absolute DIR",
                "t.toml:2:13: state-dir: 'var/lib' is not an absolute path",
                "t.toml:3:13: lock-wait: invalid duration '10 minutes': expected seconds, or numbers with units d, h, "
                "m, s such as '90s', '5m' or '1h30m'",
                "t.toml:6:14: repository.chunk-size: 100K is not a power of two from 64K to 16M",
                "t.toml:7:15: repository.compression: 22 is out of range 1-19",
                "t.toml:8:13: repository.pack-size: 8G is not from the chunk size (1M) to 4G",
                "t.toml:11:9: diff-storage.limit: invalid size '16X': expected a number with an optional unit K, M, "
                "G or T (powers of 1024)",
                "t.toml:14:25: job.a.diff-storage.size: the limit (16G) is smaller than the initial size (32G)",
                "t.toml:16:12: report.log-file: must not be empty",
            }));
}

TEST(JobConfig, JobProblemsAreAllReported) {
  EXPECT_EQ(problems_of(R"([repository]
path = "/r"
[diff-storage]
limit = "8G"
[job."bad name"]
devices = []
[job.a]
devices = ["/dev/a", "dev/b", "/dev/a", 7]
schedule = "0 25 * * *"
module = "sim:relative"
lock-wait = -1
[job.a.retention]
keep-last = 0
keep-daily = 0
[job.a.hooks]
timeout = 0
[job.a.diff-storage]
size = "10G"
[job.b]
devices = ["/dev/c"]
schedule = "every day"
retention = { keep-weekly = -2, keep-yearly = 1 }
[job.c]
devices = ["/dev/c"]
retention = {}
)"),
            (Lines{
                "t.toml:5:6: job.bad name: job name 'bad name' may only have letters, digits, '-' and '_' (at most "
                "64): it names systemd units and cron files",
                "t.toml:6:11: job.bad name.devices: the job has no devices",
                "t.toml:8:22: job.a.devices[1]: 'dev/b' is not an absolute path",
                "t.toml:8:31: job.a.devices[2]: '/dev/a' is listed twice",
                "t.toml:8:41: job.a.devices[3]: expected a device path (a string)",
                "t.toml:9:12: job.a.schedule: cron field 2 (hour): 25 is out of range 0-23",
                "t.toml:10:10: job.a.module: 'sim:relative' is neither an absolute device path such as "
                "'/dev/veeamblksnap' nor 'sim:DIR' with an absolute DIR",
                "t.toml:11:13: job.a.lock-wait: duration -1 is negative",
                "t.toml:12:1: job.a.retention: no keep rule is above 0, so prune would keep only each device's last "
                "good backup (leave the table out to never prune)",
                "t.toml:16:11: job.a.hooks.timeout: must be more than 0 seconds",
                "t.toml:18:8: job.a.diff-storage.size: the limit (8G) is smaller than the initial size (10G)",
                "t.toml:21:12: job.b.schedule: calendar spec: 'every' is not a weekday (Mon..Sun)",
                "t.toml:22:29: job.b.retention.keep-weekly: -2 is out of range 0-2147483647",
                "t.toml:25:13: job.c.retention: no keep rule is above 0, so prune would keep only each device's last "
                "good backup (leave the table out to never prune)",
            }));
}

TEST(JobConfig, AJobThatIsNotATableIsAProblem) {
  EXPECT_EQ(problems_of("job = { a = 3 }\n[repository]\npath = \"/r\"\n"),
            (Lines{"t.toml:1:13: job.a: expected a table ([job.NAME]) describing the job"}));
  EXPECT_EQ(problems_of("[[job]]\n[repository]\npath = \"/r\"\n"),
            (Lines{"t.toml:1:1: job: expected a table, got an array"}));
}

TEST(JobConfig, MetricsAndOnSuccessAreReadAndChecked) {
  auto r = check_text(R"([repository]
path = "/r"
[report]
on-success = ["/usr/local/share/blkvault/notify-mail.sh", "root"]
[metrics]
textfile-dir = "/var/lib/prometheus/node-exporter"
[job.a]
devices = ["/dev/a"]
report.on-success = "logger ok"
[job.b]
devices = ["/dev/b"]
)",
                      "t.toml");
  ASSERT_TRUE(r.ok()) << to_string(r.problems.front());
  EXPECT_EQ(r.config.metrics.textfile_dir, "/var/lib/prometheus/node-exporter");
  EXPECT_EQ(r.config.report.on_success.argv, (Lines{"/usr/local/share/blkvault/notify-mail.sh", "root"}));
  EXPECT_EQ(r.config.jobs[0].report.on_success.shell, "logger ok");
  EXPECT_EQ(r.config.jobs[1].report.on_success.argv, r.config.report.on_success.argv);  // inherited
  EXPECT_TRUE(r.config.jobs[1].report.on_failure.empty());
  EXPECT_TRUE(check_text("[repository]\npath = \"/r\"\n", "t.toml").config.metrics.textfile_dir.empty());

  EXPECT_EQ(problems_of(R"([repository]
path = "/r"
[metrics]
textfile-dir = "var/lib/node-exporter"
textfile-dirs = "/x"
[report]
on-success = 3
[job.a]
devices = ["/dev/a"]
metrics = { textfile-dir = "/x" }
)"),
            (Lines{
                "t.toml:4:16: metrics.textfile-dir: 'var/lib/node-exporter' is not an absolute path",
                "t.toml:5:1: metrics.textfile-dirs: unknown key 'textfile-dirs' (did you mean "
                "'textfile-dir'?)",
                "t.toml:7:14: report.on-success: expected a command: a string for /bin/sh or an array of strings, "
                "got an integer",
                "t.toml:10:1: job.a.metrics: unknown key 'metrics'",
            }));
}

TEST(JobConfig, SampleConfigIsValid) {
  auto r = check_file(std::string(BLKVAULT_SOURCE_DIR) + "/config/blkvault.toml.sample");
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(r->ok()) << to_string(r->problems.front());
  ASSERT_EQ(r->config.jobs.size(), 2u);
  EXPECT_EQ(r->config.jobs[0].name, "system");
  EXPECT_EQ(r->config.jobs[1].name, "database");
  EXPECT_EQ(r->config.jobs[1].diff_storage.limit_bytes, 64ull << 30);
  EXPECT_EQ(r->config.jobs[0].limits.read, "");
  EXPECT_EQ(r->config.jobs[1].limits.read, "auto:200");
  EXPECT_EQ(r->config.cbt_audit_percent, 1.0);
  EXPECT_EQ(r->config.jobs[0].cbt_audit_percent, 1.0);
  EXPECT_EQ(r->config.jobs[1].cbt_audit_percent, 0.5);
}

TEST(JobConfig, CbtAuditDefaultsToOnePercentAndAJobMayOverrideIt) {
  CheckResult none = check_text("[repository]\npath = \"/r\"\n[job.a]\ndevices = [\"/dev/a\"]\n", "t.toml");
  ASSERT_TRUE(none.ok()) << to_string(none.problems.front());
  EXPECT_EQ(none.config.jobs[0].cbt_audit_percent, 1.0);
  CheckResult set = check_text(
      "cbt-audit = 5\n[repository]\npath = \"/r\"\n[job.a]\ndevices = [\"/dev/a\"]\n"
      "[job.b]\ndevices = [\"/dev/b\"]\ncbt-audit = 0\n[job.c]\ndevices = [\"/dev/c\"]\ncbt-audit = 0.25\n",
      "t.toml");
  ASSERT_TRUE(set.ok()) << to_string(set.problems.front());
  EXPECT_EQ(set.config.cbt_audit_percent, 5.0);
  EXPECT_EQ(set.config.jobs[0].cbt_audit_percent, 5.0);
  EXPECT_EQ(set.config.jobs[1].cbt_audit_percent, 0.0);
  EXPECT_EQ(set.config.jobs[2].cbt_audit_percent, 0.25);
}

TEST(JobConfig, CbtAuditOutsideZeroToHundredOrNotANumberIsAProblem) {
  EXPECT_EQ(problems_of("cbt-audit = 101\n[repository]\npath = \"/r\"\n"),
            (Lines{"t.toml:1:13: cbt-audit: 101 is not a percentage from 0 to 100"}));
  EXPECT_EQ(problems_of("[repository]\npath = \"/r\"\n[job.a]\ndevices = [\"/dev/a\"]\ncbt-audit = -1\n"),
            (Lines{"t.toml:5:13: job.a.cbt-audit: -1 is not a percentage from 0 to 100"}));
  EXPECT_EQ(problems_of("[repository]\npath = \"/r\"\n[job.a]\ndevices = [\"/dev/a\"]\ncbt-audit = \"1%\"\n"),
            (Lines{"t.toml:5:13: job.a.cbt-audit: expected a number (a percentage from 0 to 100)"}));
}

// The example in docs/CONFIG.md (the indented block under "### Example") must pass.
TEST(JobConfig, DocumentedExampleIsValid) {
  std::ifstream in(std::string(BLKVAULT_SOURCE_DIR) + "/docs/CONFIG.md");
  ASSERT_TRUE(in);
  std::string line, example;
  bool in_example = false;
  while (std::getline(in, line)) {
    if (line == "### Example") {
      in_example = true;
    } else if (in_example && line.rfind("    ", 0) == 0) {
      example += line.substr(4) + "\n";
    } else if (in_example && !line.empty()) {
      break;
    } else if (in_example) {
      example += "\n";
    }
  }
  ASSERT_NE(example.find("[repository]"), std::string::npos) << example;
  CheckResult r = check_text(example, "CONFIG.md");
  ASSERT_TRUE(r.ok()) << to_string(r.problems.front());
  EXPECT_EQ(r.config.jobs.size(), 2u);
}

TEST(JobConfig, CheckFileNamesAFileItCannotRead) {
  test::TempDir dir;
  auto r = check_file(dir / "missing.toml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(r.error().message().find(dir / "missing.toml"), std::string::npos) << r.error().message();
}

TEST(JobConfig, TheRepositoryMayBeInObjectStorage) {
  CheckResult r = check_text("[repository]\npath = \"s3:https://s3.example.com:9000/backups/fleet\"\n", "t.toml");
  ASSERT_TRUE(r.ok()) << to_string(r.problems.front());
  EXPECT_EQ(r.config.repository.path, "s3:https://s3.example.com:9000/backups/fleet");
  EXPECT_EQ(problems_of("[repository]\npath = \"s3:ftp://host/bucket\"\n"),
            (Lines{"t.toml:2:8: repository.path: 's3:ftp://host/bucket' is not s3:https://HOST[:PORT]/BUCKET[/PREFIX]"}));
}

TEST(JobConfig, LimitsAreGlobalWithJobOverrides) {
  CheckResult r = check_text(R"([repository]
path = "s3:https://s3.example.com/backups"
[limits]
read = "auto:200"
upload = 50
psi-file = "/sys/fs/cgroup/production.slice/io.pressure"
[job.a]
devices = ["/dev/sda"]
[job.b]
devices = ["/dev/sdb"]
[job.b.limits]
read = 2.5
[job.c]
devices = ["/dev/sdc"]
limits = { upload = "7" }
)",
                             "t.toml");
  ASSERT_TRUE(r.ok()) << to_string(r.problems.front());
  EXPECT_EQ(r.config.limits.read, "auto:200");
  ASSERT_EQ(r.config.jobs.size(), 3u);
  const LimitsConfig& a = r.config.jobs[0].limits;
  EXPECT_EQ(a.read, "auto:200");
  EXPECT_EQ(a.upload, "50");
  EXPECT_EQ(a.psi_file, "/sys/fs/cgroup/production.slice/io.pressure");
  EXPECT_EQ(r.config.jobs[1].limits.read, "2.5");
  EXPECT_EQ(r.config.jobs[1].limits.upload, "50");
  EXPECT_EQ(r.config.jobs[2].limits.read, "auto:200");
  EXPECT_EQ(r.config.jobs[2].limits.upload, "7");
  CheckResult none = check_text(kMinimal, "t.toml");
  EXPECT_EQ(none.config.limits.read, "");
  EXPECT_EQ(none.config.limits.upload, "");
}

TEST(JobConfig, BadLimitsSayWhatIsWrong) {
  EXPECT_EQ(problems_of(std::string(kMinimal) +
                        "[limits]\nread = 0\nupload = \"auto\"\npsi-file = \"rel\"\nwrite = 3\n"
                        "[job.x]\ndevices = [\"/dev/sda\"]\nlimits = { read = \"auto:abc\", upload = true }\n"),
            (Lines{"t.toml:4:8: limits.read: '0' is not a read limit: expected a positive number of MB/s (1 MB = "
                   "10^6 bytes), 'auto' or 'auto:MAX'",
                   "t.toml:5:10: limits.upload: 'auto' is not a rate: expected a positive number of MB/s (1 MB = 10^6 "
                   "bytes)",
                   "t.toml:6:12: limits.psi-file: 'rel' is not an absolute path",
                   "t.toml:7:1: limits.write: unknown key 'write'",
                   "t.toml:10:19: job.x.limits.read: 'auto:abc' is not a read limit: expected a positive number of "
                   "MB/s (1 MB = 10^6 bytes), 'auto' or 'auto:MAX'",
                   "t.toml:10:40: job.x.limits.upload: expected a number of MB/s"}));
}

TEST(JobConfig, AnS3CredentialsFileIsReadAndChecked) {
  test::TempDir dir;
  const std::string good = dir / "s3.credentials", bad = dir / "bad.credentials", missing = dir / "none";
  {
    std::ofstream(good) << "# the AWS CLI's format\n[other]\naws_access_key_id = NOTTHIS\n\n[default]\n"
                           "AWS_Access_Key_Id = AKIAEXAMPLE \naws_secret_access_key=secret/with=signs\n";
    std::ofstream(bad) << "[default]\naws_access_key_id = AKIAEXAMPLE\n";
  }
  const std::string head = "[repository]\npath = \"s3:https://s3.example.com/backups\"\ncredentials-file = ";
  CheckResult r = check_text(head + "\"" + good + "\"\n", "t.toml");
  ASSERT_TRUE(r.ok()) << to_string(r.problems.front());
  EXPECT_EQ(r.config.repository.credentials_file, good);
  auto c = read_s3_credentials_file(good);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->access_key, "AKIAEXAMPLE");
  EXPECT_EQ(c->secret_key, "secret/with=signs");
  EXPECT_EQ(c->session_token, "");
  EXPECT_EQ(problems_of(head + "\"" + bad + "\"\n"),
            (Lines{"t.toml:3:20: repository.credentials-file: S3 credentials file " + bad +
                   " has no aws_secret_access_key in its [default] section"}));
  auto none = problems_of(head + "\"" + missing + "\"\n");
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].rfind("t.toml:3:20: repository.credentials-file: reading S3 credentials file " + missing + ": ", 0), 0u)
      << none[0];
  EXPECT_EQ(problems_of("[repository]\npath = \"/srv/repo\"\ncredentials-file = \"" + good + "\"\n"),
            (Lines{"t.toml:3:20: repository.credentials-file: is only for an s3: repository (path is a directory)"}));
  {
    std::ofstream(bad) << "[prod]\naws_access_key_id = A\naws_secret_access_key = B\n";
  }
  EXPECT_EQ(read_s3_credentials_file(bad).error().message(), "S3 credentials file " + bad + " has no [default] section");
}

TEST(JobConfig, LoadFileRefusesAFileWithProblems) {
  test::TempDir dir;
  std::string path = dir / "c.toml";
  { std::ofstream(path) << "[repository]\npath = \"r\"\nx = 1\n"; }
  auto r = load_file(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "config " + path + ": 2 problems, the first: " + path +
                                     ":2:8: repository.path: 'r' is not an absolute path; run 'blkvault config "
                                     "check --config " + path + "'");
  { std::ofstream(path) << kMinimal; }
  auto ok = load_file(path);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->repository.path, "/srv/repo");
}

}  // namespace
}  // namespace blkvault::config
