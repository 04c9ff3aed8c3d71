// config/job_config.h — the job configuration file (TOML, docs/CONFIG.md):
// the repository, the kernel module, difference storage, reporting, and named
// backup jobs with their devices, schedule, retention and hooks.
//
// check_text()/check_file() read and validate the whole file and report EVERY
// problem, each with its file, line, column and key path; unknown keys are
// problems, never ignored. Only a file that has no problem yields a Config.
// Defaults are applied and job overrides merged here, so a JobConfig holds the
// effective values a run uses.
//
// Pure data and functions: no globals, nothing printed; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "config/schedule.h"

namespace blkvault::config {

inline constexpr std::string_view kDefaultConfigPath = "/etc/blkvault/blkvault.toml";
inline constexpr std::string_view kDefaultModule = "/dev/veeamblksnap";
inline constexpr std::string_view kDefaultStateDir = "/var/lib/blkvault";
// `cbt-audit`: the share of unchanged chunks an incremental re-reads (as
// `backup --cbt-audit`; cbt/audit_sample.h holds the same default).
inline constexpr double kDefaultCbtAuditPercent = 1.0;

// [repository]: where backups go, and how `init` creates it.
struct RepositoryConfig {
  std::string path;                         // required, absolute
  uint64_t chunk_size_bytes = 1ull << 20;   // power of two, 64 KiB .. 16 MiB
  int compression_level = 3;                // zstd, 1 .. 19
  uint64_t pack_size_bytes = 64ull << 20;   // chunk size .. 4 GiB
  // How `blkvault run` opens an encrypted repository when neither the command
  // line nor the environment says (app/passphrase.h): absolute, or empty.
  std::string password_file;
  std::string key_file;
  // An s3: repository's credentials (AWS shared-credentials format, [default]
  // section), used when the environment has no AWS keys: absolute, or empty.
  // Validated (readable, both keys present) by check_text()/check_file().
  std::string credentials_file;
};

// [diff-storage]: the snapshot's difference storage files.
struct DiffStorageConfig {
  std::string dir;                          // absolute; default "<state-dir>/diff"
  std::string device;                       // absolute; when set, a whole block device used instead of dir
  uint64_t size_bytes = 1ull << 30;         // initial size
  uint64_t limit_bytes = 16ull << 30;       // the most it may grow to; >= size_bytes
};

// A hook or notification command. Exactly one form is set when not empty: a
// string in the file is `shell` (run by /bin/sh -c), an array is `argv` (run
// directly, argv[0] looked up in PATH).
struct Command {
  std::string shell;
  std::vector<std::string> argv;
  bool empty() const { return shell.empty() && argv.empty(); }
};

// [job.NAME.hooks]. A failing `pre` aborts the job before any snapshot;
// `post_snapshot` runs as soon as the snapshot is taken (thaw, unlock);
// `post` runs when the job ends, whatever its outcome.
struct HooksConfig {
  Command pre;
  Command post_snapshot;
  Command post;
  uint64_t timeout_s = 300;  // per hook; > 0
};

// [report]: where a job's outcome goes.
struct ReportConfig {
  std::string log_file;  // absolute, or empty: no log file
  bool syslog = true;    // one line to syslog/the journal per run
  Command on_failure;    // run when a job fails; empty: none
  Command on_success;    // run when a job succeeds; empty: none
};

// [metrics]: Prometheus metrics in node_exporter's textfile-collector format
// (docs/METRICS.md), written by `run`, `backup` and `verify`.
struct MetricsConfig {
  std::string textfile_dir;  // absolute, or empty: no metrics
};

// [limits] / [job.NAME.limits]: the backup's I/O limits, spelt as the backup
// options take them (config/values.h parse_read_limit, parse_rate; MB = 10^6 bytes).
struct LimitsConfig {
  std::string read;      // "" (none), "20", "auto", "auto:200"
  std::string upload;    // "" (none), "50": object storage repositories only
  std::string psi_file;  // absolute; "" : /proc/pressure/io (used by read = "auto…")
};

// [job.NAME.retention]: how many generations each keep rule keeps (0 = the
// rule is off). A table that is given must turn at least one rule on.
struct RetentionConfig {
  uint32_t keep_last = 0;
  uint32_t keep_hourly = 0;
  uint32_t keep_daily = 0;
  uint32_t keep_weekly = 0;
  uint32_t keep_monthly = 0;
  uint32_t keep_yearly = 0;
  // `gc`: collect garbage after pruning (the default). Off for a fleet whose
  // one maintenance host runs gc (docs/OBJECT-STORAGE.md).
  bool gc = true;
};

// [job.NAME], with the job's overrides already merged over the global values.
struct JobConfig {
  std::string name;                          // [A-Za-z0-9_-], at most 64 characters
  std::vector<std::string> devices;          // non-empty, absolute, no duplicates
  std::optional<Schedule> schedule;          // none: run by hand only
  std::optional<RetentionConfig> retention;  // none: never pruned automatically
  HooksConfig hooks;
  std::string module_spec;                   // effective: job's `module`, else global
  DiffStorageConfig diff_storage;            // effective: job's keys over the global table
  ReportConfig report;                       // effective: job's keys over the global table
  uint64_t lock_wait_s = 0;                  // effective: job's `lock-wait`, else global
  LimitsConfig limits;                       // effective: job's keys over the global table
  double cbt_audit_percent = kDefaultCbtAuditPercent;  // effective: job's `cbt-audit`, else global
};

struct Config {
  std::string file;                          // the file it was read from
  RepositoryConfig repository;
  std::string module_spec{kDefaultModule};   // "/dev/veeamblksnap" or "sim:DIR"
  std::string state_dir;                     // default /var/lib/blkvault, or DIR/client for sim:DIR
  uint64_t lock_wait_s = 0;                  // wait for the repository lock; 0: fail at once
  double cbt_audit_percent = kDefaultCbtAuditPercent;  // 0 .. 100; 0: no CBT audit
  DiffStorageConfig diff_storage;
  ReportConfig report;
  MetricsConfig metrics;
  LimitsConfig limits;
  std::vector<JobConfig> jobs;               // in the order of the file

  // nullptr when there is no job of that name.
  const JobConfig* find_job(std::string_view name) const;
};

// One problem found in a configuration file.
struct Problem {
  std::string file;
  uint32_t line = 0;    // 1-based; 0 when unknown
  uint32_t column = 0;  // 1-based; 0 when unknown
  std::string key;      // "job.db.retention.keep-daily"; empty for a TOML syntax error
  std::string message;  // "unknown key 'keep-dayly' (did you mean 'keep-daily'?)"
};

// "<file>:<line>:<column>: <key>: <message>" (the key part left out when empty).
std::string to_string(const Problem& problem);

struct CheckResult {
  Config config;                  // meaningful only when problems is empty
  std::vector<Problem> problems;  // sorted by position in the file
  bool ok() const { return problems.empty(); }
};

// Validates the TOML document `text`; `file` names it in problems and in
// Config::file.
CheckResult check_text(std::string_view text, std::string_view file);

// Reads and validates `path`. An Error only when the file cannot be read
// (kNotFound, kPermission, kIo, naming the file); problems in its contents are
// in the CheckResult.
Result<CheckResult> check_file(const std::string& path);

// For commands that need a valid configuration: the Config, or kInvalidArgument
// "config FILE: N problems, the first: …; run 'blkvault config check'".
Result<Config> load_file(const std::string& path);

}  // namespace blkvault::config
