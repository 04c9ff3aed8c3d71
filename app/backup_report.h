// app/backup_report.h — what `backup` prints when it has committed a generation:
// a human summary per device on stdout, or with --json the one result object
// documented in docs/CLI.md (backup).
// Thread-safety: none needed; called once, on the main thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "app/output.h"
#include "repo/repository.h"

namespace blkvault::app {

// What the app knows about one device beyond the repository's DeviceRecord.
struct DeviceReport {
  std::string name;
  uint64_t size_bytes = 0;
  bool incremental = false;
  std::string reason;          // why a full read ("" when incremental)
  uint64_t changed_bytes = 0;  // CBT-changed bytes (the device size for a full read)
  double seconds = 0;          // reading and storing this device
  std::string error;           // "" unless the device failed (only kept with --partial)
  bool snapshot_corrupted = false;  // the module reported its snapshot corrupted (overflow or I/O error)
  uint64_t snapshot_read_bytes = 0;     // everything read from the snapshot image (pipeline + audit)
  std::optional<repo::CbtAudit> audit;  // the CBT audit, when one ran
};

// What a backup tells its caller beyond the Status (BackupOptions::observer):
// for `run` and the metrics (app/job_metrics.h).
struct BackupObservation {
  std::vector<DeviceReport> reports;  // as far as the run got: also when it failed
  nlohmann::json report;              // the --json result object; null unless a generation was committed
};

// The I/O limits the run was under (app/io_throttle.h BackupLimits): the JSON
// "read_limit"/"upload_limit" values (null: no such limit) and the text lines.
struct LimitsReport {
  nlohmann::json read = nullptr;
  nlohmann::json upload = nullptr;
  std::vector<std::string> lines;
};

// A device's CBT audit as the --json outputs show it (docs/CLI.md, backup):
// null when none ran.
nlohmann::json cbt_audit_json(const std::optional<repo::CbtAudit>& audit);
// The seed as `--cbt-audit-seed` takes it: "0x" and 16 hex digits.
std::string cbt_audit_seed_text(uint64_t seed);
// "re-read 16 of 62 unchanged chunks (2.0 MiB, seed 0x…): all match generation 3",
// or "…: bytes A..B differ from generation 3: the CBT map missed a write".
std::string cbt_audit_text(const repo::CbtAudit& audit);

// REQUIRES: reports in the order of the devices given on the command line.
// Returns the --json result object (printed only with --json).
nlohmann::json print_backup_report(Output& out, const repo::GenerationInfo& info, const std::vector<DeviceReport>& reports,
                                   double seconds, const LimitsReport& limits = {});

}  // namespace blkvault::app
