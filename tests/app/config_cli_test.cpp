// `blkvault config check` through the real executable: exact output and exit codes.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "app/cli_support.h"

namespace blkvault::test {
namespace {

const std::string kSample = std::string(BLKVAULT_SOURCE_DIR) + "/config/blkvault.toml.sample";

std::string write_config(const TempDir& dir, const std::string& text) {
  std::string path = dir / "blkvault.toml";
  std::ofstream(path) << text;
  return path;
}

TEST(CliConfigCheck, SampleConfigPassesWithASummaryOfItsJobs) {
  auto r = run_blkvault({"config", "check", "--config", kSample});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, "config " + kSample + ": no problems\n"
                   "repository /srv/backup/blkvault (chunks of 1.0 MiB, zstd level 3, packs of 64.0 MiB), "
                   "module /dev/veeamblksnap\n"
                   "2 jobs:\n"
                   "  system: /dev/vg0/root, /dev/sda1\n"
                   "    schedule: *-*-* 02:30:00 (systemd calendar)\n"
                   "    retention: keep last 3, daily 7, weekly 4, monthly 6\n"
                   "  database: /dev/vg0/pgdata\n"
                   "    schedule: 15 */4 * * * (cron)\n"
                   "    retention: keep hourly 24, daily 14\n");
}

TEST(CliConfigCheck, PrintsEveryProblemThenOneVerdictAndExitsTwo) {
  TempDir dir;
  std::string path = write_config(dir, R"([repository]
path = "relative"
[job.db]
devices = ["/dev/sdb"]
schedule = "0 25 * * *"
[job.db.retention]
keep-last = 3
keep-dayly = 7
)");
  auto r = run_blkvault({"config", "check", "--config", path});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, path + ":2:8: repository.path: 'relative' is not an absolute path\n" +
                       path + ":5:12: job.db.schedule: cron field 2 (hour): 25 is out of range 0-23\n" +
                       path + ":8:1: job.db.retention.keep-dayly: unknown key 'keep-dayly' (did you mean "
                              "'keep-daily'?)\n"
                              "blkvault: config " + path + ": 3 problems\n");
}

TEST(CliConfigCheck, ASyntaxErrorIsOneProblem) {
  TempDir dir;
  std::string path = write_config(dir, "[repository\npath = \"/r\"\n");
  auto r = run_blkvault({"config", "check", "--config", path});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, path + ":1:12: Error while parsing table header: expected ']', saw '\\n'\n"
                   "blkvault: config " + path + ": 1 problem\n");
}

TEST(CliConfigCheck, AMissingFileIsExitTwoWithOneLine) {
  TempDir dir;
  auto r = run_blkvault({"config", "check", "--config", dir / "none.toml"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: reading config: opening " + (dir / "none.toml") + ": No such file or directory\n");
}

TEST(CliConfigCheck, JsonGivesTheParsedConfig) {
  TempDir dir;
  std::string path = write_config(dir, R"(module = "sim:/tmp/sim"
[repository]
path = "/srv/repo"
[job.web]
devices = ["/dev/sda"]
schedule = "daily"
hooks = { pre = ["sync"], timeout = "1m" }
diff-storage = { limit = "32G" }
)");
  auto r = run_blkvault({"--json", "config", "check", "--config", path});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["file"], path);
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["problems"], nlohmann::json::array());
  const auto& c = j["config"];
  EXPECT_EQ(c["module"], "sim:/tmp/sim");
  EXPECT_EQ(c["state_dir"], "/tmp/sim/client");
  EXPECT_EQ(c["repository"]["path"], "/srv/repo");
  EXPECT_EQ(c["repository"]["chunk_size_bytes"], 1 << 20);
  ASSERT_EQ(c["jobs"].size(), 1u);
  const auto& job = c["jobs"][0];
  EXPECT_EQ(job["name"], "web");
  EXPECT_EQ(job["devices"], nlohmann::json::array({"/dev/sda"}));
  EXPECT_EQ(job["schedule"], (nlohmann::json{{"kind", "calendar"}, {"text", "daily"}}));
  EXPECT_EQ(job["retention"], nullptr);
  EXPECT_EQ(job["hooks"]["pre"], (nlohmann::json{{"argv", {"sync"}}}));
  EXPECT_EQ(job["hooks"]["post"], nullptr);
  EXPECT_EQ(job["hooks"]["timeout_s"], 60);
  EXPECT_EQ(job["diff_storage"]["dir"], "/tmp/sim/client/diff");
  EXPECT_EQ(job["diff_storage"]["limit_bytes"], 32ull << 30);
}

TEST(CliConfigCheck, JsonListsTheProblemsOfAnInvalidFile) {
  TempDir dir;
  std::string path = write_config(dir, "[repository]\npath = \"/r\"\nsize = 1\n");
  auto r = run_blkvault({"config", "check", "--config", path, "--json"});
  EXPECT_EQ(r.exit_status, 2);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["valid"], false);
  EXPECT_EQ(j["problems"], nlohmann::json::parse(R"([{"file":")" + path +
                                                 R"(","line":3,"column":1,"key":"repository.size",
                                                    "message":"unknown key 'size'"}])"));
  EXPECT_EQ(r.err, path + ":3:1: repository.size: unknown key 'size'\nblkvault: config " + path + ": 1 problem\n");
}

TEST(CliConfigCheck, NeedsTheCheckSubcommand) {
  auto r = run_blkvault({"config"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: A subcommand is required (see 'blkvault --help')\n");
}

}  // namespace
}  // namespace blkvault::test
