// repo/repair.h — repairing a repository from its immutable files
// (docs/ADMIN.md, "Maintenance: repair"; docs/FORMAT.md, "Damaged packs").
//
// Two repairs, both reporting first and changing things only when asked:
//   * the index: Repository::check_index() says what is wrong with the index
//     as it is (missing, damaged, a newer blkvault's, behind the manifests, or
//     disagreeing with them); Repository::rebuild_index() recreates it.
//     REQUIRES: the repository opened with OpenOptions::index_as_is, so that
//     opening did not already repair it.
//   * packs: Repository::repair_packs() reads and checks every stored chunk,
//     and lists each damaged one (or one no pack holds) with every generation,
//     device and byte range it spoils. With `apply` it moves damaged blobs
//     aside: each pack holding one is rewritten without them (the new pack is
//     published first), the old pack is copied to damaged/<its name> with a
//     record damaged/<its name>.json, one index transaction moves the good
//     chunks to the new pack and forgets the damaged ones, and only then the
//     old pack is deleted. A kill at any point loses nothing still readable,
//     and a rerun finishes (repair.cpp says why at each step).
//
// A forgotten chunk is "missing": generations still reference it by id, and
// the next backup of each affected device re-reads the byte ranges that
// reference it (Repository::missing_chunks), so when the source still holds
// that content the chunk is stored again and every generation that uses it is
// whole again.
//
// Thread-safety: like Repository's methods.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "repo/repository.h"

namespace blkvault::repo {

struct IndexCheck {
  enum class State {
    kOk,         // agrees with the manifests and tombstones
    kMissing,    // no index file
    kDamaged,    // SQLite cannot read it, no/other schema, another repository's, integrity check fails
    kNewer,      // a newer blkvault's schema version
    kBehind,     // manifests or tombstones it does not know yet
    kDisagrees,  // a value in it differs from what the manifests say
  };
  State state = State::kOk;
  std::string path;                   // the index file
  std::vector<std::string> findings;  // one sentence each; empty when kOk
};
std::string_view to_string(IndexCheck::State state);  // "ok", "missing", "damaged", ...

struct RepairPacksOptions {
  bool apply = false;  // move the damaged blobs aside (REQUIRES: opened with write)
  size_t threads = 2;
};

// A chunk that cannot be read back, and what it spoils.
struct BadChunk {
  enum class State {
    kDamaged,  // in a pack, but its blob fails a check (or the pack is gone)
    kMissing,  // no pack holds it: the next backup of each device re-reads its ranges
    kLost,     // missing, and a backup of every affected device since it went
               // missing did not find it on the source: stays damaged
  };
  State state = State::kDamaged;
  ChunkId id{};
  std::string pack;         // kDamaged: the pack holding it ("" when the index has none)
  uint64_t offset = 0;      // kDamaged: of its blob in the pack
  std::string what;         // why, one sentence
  int64_t missing_since_ms = 0;  // kMissing/kLost: when repair packs moved it aside (0: unknown)
  std::vector<Damage::Range> affected;  // every remaining generation, device and byte range it spoils
  // kMissing/kLost: devices whose backups since then re-read it: device -> generation.
  std::vector<std::pair<std::string, GenerationId>> reread_by;
};
std::string_view to_string(BadChunk::State state);  // "damaged", "missing", "lost"

// One pack rewritten without its damaged blobs.
struct MovedPack {
  std::string pack;         // packs/…: the damaged pack, no longer there
  std::string copy;         // damaged/packs/…: where it was copied ("" when it was gone already)
  std::string replacement;  // packs/…: the pack the good blobs went to ("" when none was good)
  uint64_t chunks_removed = 0;
  uint64_t chunks_kept = 0;
};

struct RepairPacksReport {
  uint64_t packs = 0;       // packs checked
  uint64_t chunks = 0;      // chunks checked
  uint64_t bytes_read = 0;
  std::vector<BadChunk> bad;      // by state, then chunk id; after apply, moved ones are kMissing
  std::vector<MovedPack> moved;   // apply: what was done
  uint64_t leftovers_removed = 0;  // apply: damaged packs a killed run left in packs/ after moving them
  bool clean() const { return bad.empty(); }
};

// A chunk that remaining generations of one device reference and no pack holds.
struct MissingChunk {
  ChunkId id{};
  std::vector<Damage::Range> affected;  // of that device only
};

// "damaged/" + pack name, and the record next to it.
std::string damaged_copy_name(const std::string& pack);
std::string damaged_record_name(const std::string& pack);

}  // namespace blkvault::repo
