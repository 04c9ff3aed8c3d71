// app/schedule_commands.h — `blkvault schedule install|remove|show [JOB]`:
// the jobs' schedules as systemd timers or cron.d files (docs/CLI.md
// "schedule", docs/ADMIN.md).
//
// Files, under --root (default "/"):
//   systemd: etc/systemd/system/blkvault-JOB.service (Type=oneshot, runs
//            `blkvault run JOB --config FILE`) and blkvault-JOB.timer
//            (OnCalendar= from the job's schedule, Persistent=true);
//   cron:    etc/cron.d/blkvault-JOB, one line running the same command as
//            root, its stdout discarded so cron mails only failures.
// systemd is chosen when ROOT/run/systemd/system exists (systemd is running),
// else cron; --systemd/--cron choose. Overlapping runs are blkvault's own
// business (the job lock of `run`: a skipped run is logged), not flock(1)'s,
// whose silent skip would hide that backups no longer happen.
// With the real root, install and remove also call `systemctl daemon-reload`
// and enable/disable the timer (when systemctl is there).
//
// Thread-safety: a command; runs on the main thread.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "config/job_config.h"

namespace blkvault::app {

struct ScheduleOptions {
  std::string action;  // install, remove, show
  std::string job;     // empty: every job (with a schedule, for install)
  std::string config_file{config::kDefaultConfigPath};
  std::string root = "/";
  bool cron = false;
  bool systemd = false;
  size_t count = 5;    // show: how many next run times
};
// `self_exe`: the blkvault binary the units and cron lines run.
Status cmd_schedule(Context& ctx, const ScheduleOptions& opts, const std::string& self_exe);

class ScheduleCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const { return schedule_ != nullptr && schedule_->parsed(); }
  Status run(Context& ctx, const std::string& self_exe);

 private:
  CLI::App* schedule_ = nullptr;
  CLI::App* install_ = nullptr;
  CLI::App* remove_ = nullptr;
  CLI::App* show_ = nullptr;
  ScheduleOptions opts_;
};

}  // namespace blkvault::app
