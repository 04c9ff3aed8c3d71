// repo/verify_progress.h — rolling verify: which packs a `verify --data` run
// reads (PackSelection) and the per-pack record of the last check, kept in the
// index's `pack_verify` table (docs/FORMAT.md, "Verification progress"). The
// table is progress, not truth: losing it (a rebuilt index, another host's
// cache) only means packs count as never verified again.
//
// Thread-safety: pure functions, and functions on a sql::Db whose caller holds
// the repository's mutex (REQUIRES below).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "repo/repository.h"
#include "repo/sqlite.h"

namespace blkvault::repo {

struct PackCandidate {
  int64_t rowid = 0;
  std::string name;
  uint64_t size_bytes = 0;
  std::optional<int64_t> verified_ms;  // its last data check, if any
};

struct PackProgress {
  int64_t verified_ms = 0;
  bool ok = false;
  std::string problem;  // the first thing found, when !ok
};

// The slice hash of --subset N/M: XXH3-64 of the pack's name, seed 0.
uint64_t pack_slice_hash(std::string_view name);

// Indices into `packs` of the selected ones, in check order: never verified
// first, then least recently verified, ties by name. `now_ms` is what
// older_than_ms counts back from. The budget is the caller's (it is time).
std::vector<size_t> select_packs(const std::vector<PackCandidate>& packs, const PackSelection& select, int64_t now_ms);

// Every recorded pack by name; empty when the table does not exist (an index
// no data verify has written to). REQUIRES: the repository's mutex held.
Result<std::unordered_map<std::string, PackProgress>> load_pack_progress(sql::Db& db);

// Records one pack's check, creating the table on first use; with `tidy`, also
// drops the rows of packs no longer in the index (gc deleted them: once per
// run is enough). REQUIRES: the repository's mutex held.
Status record_pack_progress(sql::Db& db, const std::string& name, const PackProgress& progress, bool tidy);

}  // namespace blkvault::repo
