// app/job_metrics.h — what `run`, `backup` and `verify` record as Prometheus
// metrics (docs/METRICS.md), in the metrics directory (`--metrics-dir`, or
// `[metrics] textfile-dir` for `run`):
//   blkvault_JOB.prom          one per job (`backup`: its --metrics-job, default
//                              "backup"), labels job, device, reason, repository
//   blkvault_verify_REPO.prom  one per repository verified (REPO: its path with
//                              every character but [A-Za-z0-9] made '_'),
//                              labels repository, data
// Each write merges over the previous file (app/metrics.h): a failed run
// updates the last-run series and keeps every last-success series.
//
// Thread-safety: stateless functions; called on the main thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/backup_report.h"
#include "app/commands.h"
#include "common/error.h"

namespace blkvault::repo {
class Repository;
}

namespace blkvault::app {

// The repository as a job's file reports it after the run.
struct RepositoryFigures {
  uint64_t size_bytes = 0;  // in packs
  uint64_t packs = 0;
  uint64_t chunks = 0;
  uint64_t committed = 0;   // complete or partial generations
  uint64_t failed = 0;
};
Result<RepositoryFigures> repository_figures(repo::Repository& repository);

// One run of a job, or one `backup`.
struct RunMetrics {
  std::string job;
  std::vector<std::string> devices;      // the job's devices: series of any other device are dropped
  std::string repository;
  int exit_status = 0;                   // 0: success
  double finished_s = 0;                 // Unix time the run ended
  double duration_s = 0;
  std::optional<uint64_t> generation;    // committed by this run (also when a later step failed)
  double committed_s = 0;                // Unix time of that commit
  const BackupObservation* backup = nullptr;  // null: the backup did not start
  std::optional<RepositoryFigures> figures;   // none: the repository was not opened (its series are kept)
};

// "<dir>/blkvault_<job>.prom".
std::string job_metrics_path(const std::string& dir, std::string_view job);
// Merges `run` into the job's file and publishes it. Errors name the file.
Status write_run_metrics(const std::string& dir, const RunMetrics& run);

struct VerifyMetrics {
  std::string repository;
  bool data = false;  // --data
  double finished_s = 0;
  double duration_s = 0;
  uint64_t problems = 0;
  uint64_t damaged_chunks = 0;
};
std::string verify_metrics_path(const std::string& dir, std::string_view repository);
Status write_verify_metrics(const std::string& dir, const VerifyMetrics& verify);

// The `reason` label of a full read, from the reason text of the backup report:
// requested, no_baseline, cbt_generation_changed, capacity_changed,
// block_size_changed, snap_number_wrap, map_size_inconsistent,
// cbt_map_unreadable, baseline_unreadable, baseline_missing, other.
std::string full_read_reason_code(std::string_view reason);

// `backup`: cmd_backup(), and with ctx.metrics_dir set, its metrics. The
// repository is then opened first (to report its figures after the run); a
// failure to write the metrics is a warning, not the backup's failure.
// kInvalidArgument for a --metrics-job that is not a valid job name.
Status cmd_backup_with_metrics(Context& ctx, const BackupOptions& opts);

}  // namespace blkvault::app
