// app/run_commands.h — `blkvault run JOB [--config FILE]`: one scheduled job
// from the configuration file, start to end (docs/CLI.md "run", docs/ADMIN.md).
//
// Order of events, and why:
//   config -> the job's log (file, syslog) -> the job lock (<state-dir>/jobs/
//   JOB.lock: a run whose previous run is still going is skipped, and says so)
//   -> the repository's writer lock (waiting the job's lock-wait; held to the
//   end, so retention sees the generation just made and no other writer comes
//   between) -> pre hook -> backup, with the post-snapshot hook as soon as the
//   snapshot is taken -> retention (prune by the job's keep rules, then gc)
//   -> post hook -> the outcome line -> the job's metrics file (when a metrics
//   directory is set, app/job_metrics.h) -> the on-success or on-failure
//   command, with the outcome as JSON on stdin.
// Hooks bracket the work: they run only once both locks are held. The
// post-snapshot hook also runs when a pre hook succeeded but no snapshot could
// be taken, so what `pre` froze is always thawed.
//
// Thread-safety: a command; runs on the main thread.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "config/job_config.h"

namespace blkvault::app {

struct RunOptions {
  std::string job;
  std::string config_file{config::kDefaultConfigPath};
};
// The run's first failure (the exit status follows its code): a pre hook that
// failed (kIo), the repository locked (kLocked), the backup's own errors, ...
// A skipped run is kLocked "job JOB skipped: …".
Status cmd_run(Context& ctx, const RunOptions& opts);

class RunCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const { return run_ != nullptr && run_->parsed(); }
  Status run(Context& ctx) { return cmd_run(ctx, opts_); }

 private:
  CLI::App* run_ = nullptr;
  RunOptions opts_;
};

}  // namespace blkvault::app
