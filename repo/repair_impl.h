// repo/repair_impl.h — internals shared by repair.cpp and repair_packs.cpp.
// Not part of the API. REQUIRES: impl.mu held, unless noted.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "repo/repair.h"
#include "repo/repository_impl.h"

namespace blkvault::repo {

// Every byte range of a remaining generation (of `device`, when given) that
// reads chunk `chunk_rowid`, by generation, device and offset.
Result<std::vector<Damage::Range>> affected_ranges(Repository::Impl& impl, int64_t chunk_rowid,
                                                   const std::vector<GenerationInfo>& gens,
                                                   std::optional<std::string_view> device);

// Chunks the chunk map references (of `device`, when given) that no pack holds:
// rowid and id, by id.
Result<std::vector<std::pair<int64_t, ChunkId>>> referenced_missing_chunks(Repository::Impl& impl,
                                                                           std::optional<std::string_view> device);

// The records under damaged/: chunk id (hex) -> when it was moved aside (the
// earliest record naming it). `packs_moved` (may be null) receives the packs
// that have a copy under damaged/. Unreadable records are skipped. No lock needed.
Result<std::map<std::string, int64_t>> read_repair_records(Storage& storage, std::vector<std::string>* packs_moved);

// Sets bad.state to kMissing or kLost (and bad.reread_by) from its affected
// ranges, its missing_since_ms and the generations (oldest first).
void classify_missing(BadChunk& bad, const std::vector<GenerationInfo>& gens);

}  // namespace blkvault::repo
