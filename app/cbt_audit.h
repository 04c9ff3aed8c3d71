// app/cbt_audit.h — the CBT audit of one device's incremental backup
// (docs/RESTORE.md, "Auditing the CBT"; `backup --cbt-audit`).
//
// The chunks the CBT map calls unchanged are never read by an incremental
// backup: they are inherited from the parent generation. If the tracker ever
// missed a write, the stale chunk would be inherited by every later
// generation. The audit re-reads a random sample of those chunks from the same
// snapshot image the backup reads, computes their chunk ids with the
// repository's keyed chunk-id function and compares them with the parent
// generation's chunk map. A difference is a write the CBT missed; the caller
// then reads the device fully (app/cmd_backup.cpp).
//
// Runs on the calling thread, before the device's pipeline: the sample is at
// most cbt::kAuditCapChunks chunks. Only called when the audit is on, so a
// disabled audit costs nothing on the backup path.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "app/pipeline.h"
#include "cbt/changed_extents.h"
#include "common/cancel.h"
#include "common/error.h"
#include "repo/repository.h"

namespace blkvault::app {

struct CbtAuditRequest {
  std::string device;               // as named in the repository
  uint64_t size_bytes = 0;          // the device now (= its size in the parent)
  repo::GenerationId parent = 0;    // the generation the incremental builds on
  double percent = 0;               // REQUIRES: 0 < percent <= 100
  uint64_t run_seed = 0;            // recorded; the sample uses the device's derived seed
  uint64_t position = 0;            // the device's place on the command line
};

// Re-reads the sample through `read` (the snapshot image) and compares it with
// the parent's chunk map. Errors: the index lookup's, a read's (wrapped in
// "CBT audit: ", failing the device like any read of its snapshot), or
// kCancelled.
Result<repo::CbtAudit> run_cbt_audit(repo::Repository& repository, const CbtAuditRequest& request,
                                     std::span<const cbt::ByteExtent> changed, const ReadAt& read,
                                     const CancelToken& cancel);

// "bytes 1048576..1179648, 4194304..4325376" (at most four ranges, then "and N more").
std::string describe_ranges(const std::vector<repo::CbtAudit::Range>& ranges);

// The --cbt-audit value: a number from 0 to 100 (decimals allowed, "%"
// not). kInvalidArgument naming the option and the text otherwise.
Result<double> parse_cbt_audit_percent(std::string_view text, std::string_view what = "--cbt-audit");
// The --cbt-audit-seed value: decimal, or hex with 0x. kInvalidArgument otherwise.
Result<uint64_t> parse_cbt_audit_seed(std::string_view text);

}  // namespace blkvault::app
