// repo/retention.h — which generations a keep policy keeps (docs/RETENTION.md).
//
// The rules users know from restic/borg, on the generations' start times in
// the local time zone (TZ):
//   keep-last N     the N newest generations;
//   keep-hourly N   the newest generation of each of the N newest hours that have one;
//   keep-daily, -weekly (ISO 8601 weeks, Monday first), -monthly, -yearly: likewise.
// A generation is kept when any rule keeps it, and always when it is the
// newest generation in which some device completed (its last good backup):
// the next incremental builds on it.
// Only committed generations (complete, partial) take part.
//
// A pure function: no I/O. Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "repo/repository.h"

namespace blkvault::repo {

struct RetentionPolicy {
  int last = 0, hourly = 0, daily = 0, weekly = 0, monthly = 0, yearly = 0;
  bool empty() const { return last == 0 && hourly == 0 && daily == 0 && weekly == 0 && monthly == 0 && yearly == 0; }
  std::string describe() const;  // "keep-last 3, keep-daily 7"
};

struct RetentionDecision {
  GenerationId id = 0;
  int64_t started_ms = 0;
  bool keep = false;
  std::vector<std::string> reasons;  // "last 1", "daily 2026-11-25", "latest of /dev/sdb"
};

// kInvalidArgument for an empty policy (it would remove everything but the
// latest backups) or a negative count. Decisions come newest first.
Result<std::vector<RetentionDecision>> apply_retention(const std::vector<GenerationInfo>& generations,
                                                       const RetentionPolicy& policy);

}  // namespace blkvault::repo
