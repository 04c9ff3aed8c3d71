// app/job_log.h — where a job run (`blkvault run`) reports: the job's log file
// and syslog (docs/CONFIG.md [report], docs/ADMIN.md "Reading the log").
//
// Every line in the log file reads
//   2026-11-25T02:30:04+01:00 blkvault[1234]: job NAME: TEXT
// The outcome line's TEXT starts with "success: ", "failure: " or "skipped: ";
// a hook's output lines start with its label ("pre hook: ", "post hook: ",
// "on-failure command: "). Only outcome lines go to syslog (facility daemon, ident
// "blkvault", with the pid): info for success, warning for skipped, err for
// failure. They are sent to the local syslog socket (/dev/log, or
// BLKVAULT_SYSLOG_SOCKET) in syslog(3)'s format; a line that cannot be
// delivered is noted in the log file ("syslog: /dev/log: …").
//
// Thread-safety: none; one JobLog per run, used from the main thread.
#pragma once

#include <string>
#include <string_view>

#include "app/output.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace blkvault::app {

class JobLog {
 public:
  enum class Outcome { kSuccess, kFailure, kSkipped };

  // Opens `log_file` for appending (created 0640 when missing; its directory
  // must exist). An empty path: no log file, and hook output goes to stderr
  // (through `out`) instead. Errors name the file.
  static Result<JobLog> open(std::string job, const std::string& log_file, bool use_syslog, Output& out);
  // Reports to syslog only: for a run whose log file could not be opened.
  static JobLog syslog_only(std::string job, bool use_syslog, Output& out);

  JobLog(JobLog&&) noexcept = default;
  JobLog& operator=(JobLog&&) = delete;
  JobLog(const JobLog&) = delete;
  JobLog& operator=(const JobLog&) = delete;

  // One line (or each line of a multi-line text) in the log file.
  void line(std::string_view text);
  // A hook's captured output, each line prefixed with "LABEL: ".
  void hook_output(std::string_view label, std::string_view output);
  // The run's outcome line: the log file and syslog.
  void outcome(Outcome outcome, std::string_view text);

  // The first failure to write the log file, if any ("" when none): the run
  // reports it as a warning on stderr rather than losing it.
  const std::string& write_problem() const { return write_problem_; }

 private:
  JobLog(std::string job, UniqueFd fd, bool use_syslog, Output& out)
      : job_(std::move(job)), fd_(std::move(fd)), syslog_(use_syslog), out_(&out) {}
  void write_line(std::string_view text);

  std::string job_;
  UniqueFd fd_;  // invalid: no log file
  bool syslog_;
  Output* out_;
  std::string write_problem_;
};

// "success", "failure", "skipped".
std::string_view outcome_name(JobLog::Outcome outcome);

}  // namespace blkvault::app
