// `blkvault schedule install|remove|show` through the real executable, against
// real files in a temporary root: the generated systemd units (checked with
// `systemd-analyze verify` and `calendar` where available) and cron.d lines.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "app/cli_support.h"

namespace blkvault::test {
namespace {

namespace fs = std::filesystem;

class ScheduleCliTest : public ::testing::Test {
 protected:
  TempDir dir_;
  std::string root_ = dir_ / "root";
  std::string config_ = dir_ / "blkvault.toml";

  void SetUp() override {
    std::ofstream(config_) << "[repository]\npath = \"/srv/backup\"\n"
                              "[job.nightly]\ndevices = [\"/dev/vg0/root\"]\nschedule = \"*-*-* 02:30:00\"\n"
                              "[job.db]\ndevices = [\"/dev/vg0/pg\"]\nschedule = \"15 */4 * * *\"\n"
                              "[job.monthly]\ndevices = [\"/dev/sdc\"]\nschedule = \"0 3 1 * mon\"\n"
                              "[job.manual]\ndevices = [\"/dev/sdd\"]\n";
  }
  CliRun schedule(const std::vector<std::string>& args) {
    std::vector<std::string> a = {"schedule"};
    a.insert(a.end(), args.begin(), args.end());
    a.insert(a.end(), {"--config", config_, "--root", root_});
    return run_blkvault(a);
  }
  std::string unit(const std::string& name) { return root_ + "/etc/systemd/system/" + name; }
  std::string cron_file(const std::string& job) { return root_ + "/etc/cron.d/blkvault-" + job; }
  static std::string exec_start(const std::string& job, const std::string& config) {
    return "ExecStart=" + std::string(BLKVAULT_BINARY) + " run " + job + " --config " + config + "\n";
  }
};

TEST_F(ScheduleCliTest, SystemdUnitsRunTheJobOnItsCalendar) {
  auto r = schedule({"install", "--systemd"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("nightly: wrote " + unit("blkvault-nightly.service") + " and " + unit("blkvault-nightly.timer") +
                       " (OnCalendar=*-*-* 02:30:00)\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("manual: no schedule (run by hand only), nothing installed\n"), std::string::npos);
  EXPECT_NE(r.out.find("not enabled"), std::string::npos);

  const std::string service = read_whole(unit("blkvault-db.service"));
  EXPECT_NE(service.find("\n[Service]\nType=oneshot\n"), std::string::npos) << service;
  EXPECT_NE(service.find(exec_start("db", config_)), std::string::npos) << service;
  EXPECT_NE(service.find("\nEnvironment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
            std::string::npos);
  const std::string timer = read_whole(unit("blkvault-db.timer"));
  EXPECT_NE(timer.find("\n[Timer]\nOnCalendar=*-*-* 00/4:15:00\nPersistent=true\nUnit=blkvault-db.service\n"),
            std::string::npos)
      << timer;
  EXPECT_NE(timer.find("\n[Install]\nWantedBy=timers.target\n"), std::string::npos);
  // Either day field may match in cron: two OnCalendar= lines.
  const std::string monthly = read_whole(unit("blkvault-monthly.timer"));
  EXPECT_NE(monthly.find("OnCalendar=*-*-01 03:00:00\nOnCalendar=Mon *-*-* 03:00:00\n"), std::string::npos)
      << monthly;
  EXPECT_NE(read_whole(unit("blkvault-nightly.timer")).find("\nOnCalendar=*-*-* 02:30:00\n"), std::string::npos);
  EXPECT_FALSE(fs::exists(unit("blkvault-manual.timer")));

  if (!fs::exists("/usr/bin/systemd-analyze") && !fs::exists("/bin/systemd-analyze")) {
    std::printf("[  SKIPPED ] systemd-analyze not installed: the units were not verified by systemd\n");
    return;
  }
  for (const char* spec : {"*-*-* 02:30:00", "*-*-* 00/4:15:00", "*-*-01 03:00:00", "Mon *-*-* 03:00:00"}) {
    std::string cmd = std::string("systemd-analyze calendar '") + spec + "' > /dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "systemd refuses OnCalendar=" << spec;
  }
  for (const char* job : {"nightly", "db", "monthly"}) {
    // --man=no: the units name no man pages; offline, so no running systemd is needed.
    std::string out = dir_ / "verify.out";
    std::string cmd = "systemd-analyze verify --man=no '" + unit(std::string("blkvault-") + job + ".service") + "' '" +
                      unit(std::string("blkvault-") + job + ".timer") + "' > '" + out + "' 2>&1";
    int rc = std::system(cmd.c_str());
    std::string said = read_whole(out);
    // Only our units' own problems count: a container without systemd as PID 1
    // may make verify complain about the host's units.
    std::smatch m;
    static const std::regex ours("blkvault-[a-z]+\\.(service|timer):[^\n]*");
    bool problem = std::regex_search(said, m, ours);
    EXPECT_FALSE(problem) << "systemd-analyze verify (status " << rc << "): " << said;
  }
}

TEST_F(ScheduleCliTest, CronFilesRunTheJobAsRootWithPathConfigAndNoOutputOnSuccess) {
  auto r = schedule({"install", "--cron"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("db: wrote " + cron_file("db") + " (15 */4 * * *)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nightly: wrote " + cron_file("nightly") + " (30 02 * * *)\n"), std::string::npos) << r.out;
  const std::string db = read_whole(cron_file("db"));
  EXPECT_NE(db.find("\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"), std::string::npos);
  EXPECT_NE(db.find("\nSHELL=/bin/sh\n"), std::string::npos);
  // The job line: five fields, the user, the command.
  std::string line;
  std::istringstream in(db);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l[0] != '#' && l.find('=') == std::string::npos) line = l;
  }
  std::istringstream fields(line);
  std::vector<std::string> f;
  for (std::string w; fields >> w;) f.push_back(w);
  ASSERT_GE(f.size(), 10u) << line;
  EXPECT_EQ(std::vector<std::string>(f.begin(), f.begin() + 6),
            (std::vector<std::string>{"15", "*/4", "*", "*", "*", "root"}));
  EXPECT_EQ(line.substr(line.find(" root ") + 6),
            std::string(BLKVAULT_BINARY) + " run db --config " + config_ + " >/dev/null");
  // cron(8) ignores files in cron.d whose names have a dot.
  EXPECT_EQ(fs::path(cron_file("db")).filename().string().find('.'), std::string::npos);
  EXPECT_EQ(fs::status(cron_file("db")).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
}

// A config path with characters cron and systemd give a meaning to ('%' is a
// newline to cron and a specifier to systemd, '$' a variable to systemd, a
// quote and a space split words): both files still pass exactly that path.
TEST_F(ScheduleCliTest, ConfigPathsWithPercentDollarQuotesAndSpacesReachTheJobUnchanged) {
  const std::string odd_dir = dir_ / "a 100% \"$HOME\" it's";
  fs::create_directories(odd_dir);
  const std::string odd = odd_dir + "/blkvault.toml";
  fs::copy_file(config_, odd);
  config_ = odd;
  ASSERT_EQ(schedule({"install", "db", "--cron"}).exit_status, 0);
  const std::string cron = read_whole(cron_file("db"));
  ASSERT_EQ(schedule({"install", "db", "--systemd"}).exit_status, 0);  // replaces the cron file

  // cron: take the command after the user, undo cron's '\%', let /bin/sh split it.
  std::string line;
  std::istringstream in(cron);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l[0] != '#' && l.find('=') == std::string::npos) line = l;
  }
  std::string command = line.substr(line.find(" root ") + 6);
  command = command.substr(0, command.rfind(" >/dev/null"));
  std::string unescaped;
  for (size_t i = 0; i < command.size(); ++i) {
    ASSERT_FALSE(command[i] == '%' && (i == 0 || command[i - 1] != '\\')) << "an unescaped % in: " << command;
    if (command[i] == '\\' && i + 1 < command.size() && command[i + 1] == '%') continue;
    unescaped += command[i];
  }
  const std::string words = dir_ / "words";
  const std::string printer = "printf '%s\\n' " + unescaped.substr(unescaped.find(" run ") + 1) + " > '" + words + "'";
  ASSERT_EQ(std::system(printer.c_str()), 0) << printer;
  EXPECT_EQ(read_whole(words), "run\ndb\n--config\n" + odd + "\n");

  // systemd: double quotes with C escapes, '%' and '$' doubled.
  const std::string service = read_whole(unit("blkvault-db.service"));
  EXPECT_NE(service.find("ExecStart=" + std::string(BLKVAULT_BINARY) + " run db --config \"" + dir_.path() +
                         "/a 100%% \\\"$$HOME\\\" it's/blkvault.toml\"\n"),
            std::string::npos)
      << service;
}

TEST_F(ScheduleCliTest, ACalendarSpecCronCannotExpressIsRefusedWithTheReason) {
  std::ofstream(config_, std::ios::app) << "[job.zoned]\ndevices = [\"/dev/sde\"]\nschedule = \"Mon..Fri 22:00 UTC\"\n";
  auto r = schedule({"install", "zoned", "--cron"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err,
            "blkvault: job zoned: calendar spec 'Mon..Fri 22:00 UTC' cannot be written as a cron expression: it has a "
            "time zone\n");
  EXPECT_FALSE(fs::exists(cron_file("zoned")));
  auto manual = schedule({"install", "manual"});
  EXPECT_EQ(manual.exit_status, 2);
  EXPECT_EQ(manual.err.rfind("blkvault: job manual has no schedule in " + config_, 0), 0u) << manual.err;
}

TEST_F(ScheduleCliTest, SystemdIsChosenWhenItRunsAndSwitchingReplacesTheOtherKind) {
  ASSERT_EQ(schedule({"install", "db"}).exit_status, 0);
  EXPECT_TRUE(fs::exists(cron_file("db"))) << "no systemd under the root: cron";
  fs::create_directories(root_ + "/run/systemd/system");
  auto r = schedule({"install", "db"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_TRUE(fs::exists(unit("blkvault-db.timer")));
  EXPECT_FALSE(fs::exists(cron_file("db"))) << "the cron file would run the job a second time";
  EXPECT_NE(r.out.find("; removed " + cron_file("db")), std::string::npos) << r.out;
}

TEST_F(ScheduleCliTest, ShowPrintsTheInstalledEntriesAndTheNextRuns) {
  ASSERT_EQ(schedule({"install", "db", "--cron"}).exit_status, 0);
  ASSERT_EQ(schedule({"install", "nightly", "--systemd"}).exit_status, 0);
  auto r = schedule({"show"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("db: schedule 15 */4 * * * (cron)\n  installed: cron " + cron_file("db") + ": 15 */4 * * * root "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("nightly: schedule *-*-* 02:30:00 (systemd calendar)\n  installed: systemd timer " +
                       unit("blkvault-nightly.timer") + " (OnCalendar=*-*-* 02:30:00)\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("monthly: schedule 0 3 1 * mon (cron)\n  not installed: 'blkvault schedule install monthly'\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("manual: no schedule (run by hand only)\n"), std::string::npos);

  auto j = run_blkvault({"--json", "schedule", "show", "--config", config_, "--root", root_, "-n", "3"});
  ASSERT_EQ(j.exit_status, 0) << j.err;
  auto jobs = nlohmann::json::parse(j.out)["jobs"];
  ASSERT_EQ(jobs.size(), 4u);
  EXPECT_EQ(jobs[1]["job"], "db");
  EXPECT_EQ(jobs[1]["installed"][0]["kind"], "cron");
  EXPECT_TRUE(jobs[1]["installed"][0]["up_to_date"].get<bool>());
  ASSERT_EQ(jobs[1]["next_runs"].size(), 3u);
  for (const auto& t : jobs[1]["next_runs"]) {
    static const std::regex at15(R"(^\w{3} \d{4}-\d\d-\d\d (00|04|08|12|16|20):15:00 \S+$)");
    EXPECT_TRUE(std::regex_match(t.get<std::string>(), at15)) << t;
  }
  ASSERT_EQ(jobs[0]["next_runs"].size(), 3u) << jobs[0].dump();
  for (const auto& t : jobs[0]["next_runs"]) EXPECT_NE(t.get<std::string>().find(" 02:30:00"), std::string::npos) << t;

  // A schedule changed in the config shows as out of date.
  std::string text = read_whole(config_);
  text.replace(text.find("15 */4 * * *"), 12, "45 1 * * *");
  std::ofstream(config_) << text;
  auto changed = schedule({"show", "db"});
  EXPECT_NE(changed.out.find("differs from the config: run 'blkvault schedule install' again"), std::string::npos)
      << changed.out;
}

TEST_F(ScheduleCliTest, RemoveDeletesOnlyWhatInstallWrote) {
  ASSERT_EQ(schedule({"install", "--cron"}).exit_status, 0);
  ASSERT_EQ(schedule({"install", "nightly", "--systemd"}).exit_status, 0);
  std::ofstream(root_ + "/etc/cron.d/blkvault-someone-else") << "0 * * * * root true\n";
  auto one = schedule({"remove", "db"});
  ASSERT_EQ(one.exit_status, 0) << one.err;
  EXPECT_EQ(one.out, "db: removed " + cron_file("db") + "\n");
  auto all = schedule({"remove"});
  ASSERT_EQ(all.exit_status, 0) << all.err;
  EXPECT_EQ(all.out, "monthly: removed " + cron_file("monthly") + "\nnightly: removed " + unit("blkvault-nightly.timer") +
                         ", " + unit("blkvault-nightly.service") + "\n");
  EXPECT_TRUE(fs::exists(root_ + "/etc/cron.d/blkvault-someone-else"));
  EXPECT_EQ(schedule({"remove"}).out, "no blkvault schedule is installed\n");
}

}  // namespace
}  // namespace blkvault::test
