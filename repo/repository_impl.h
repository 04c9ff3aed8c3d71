// repo/repository_impl.h — internals shared by the repository's .cpp files
// (repository.cpp: open, sync, queries; generation_writer.cpp; restore_verify.cpp).
// Not part of the API.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/logger.h"
#include "repo/lock.h"
#include "repo/manifest.h"
#include "repo/repository.h"
#include "repo/sqlite.h"
#include "repo/storage.h"

namespace blkvault::repo {

// The index schema this blkvault writes (PRAGMA user_version; docs/FORMAT.md
// "Index (SQLite)"): 2 added generation_devices.cbt_audit; 3 dropped the
// chunk_map_by_chunk index and made a current row's gen_to 2^31-1. Older
// versions are migrated on open. repository.cpp opens and migrates; repair.cpp checks.
inline constexpr int kIndexSchemaVersion = 3;

// Marks a gc publishes ("gc/<20-digit unix ms>") before it deletes or rewrites
// packs, so other hosts' index caches learn that packs they know may be gone.
inline constexpr const char* kGcMarkDir = "gc/";

// A chunk_map row some remaining generation reads (SQL, for gc and reconcile_packs).
inline constexpr std::string_view kLiveRow =
    "EXISTS (SELECT 1 FROM generation_devices gd JOIN generations g ON g.id = gd.generation "
    "WHERE gd.device = chunk_map.device AND gd.complete = 1 AND g.state IN ('complete', 'partial') "
    "AND gd.generation >= chunk_map.gen_from AND gd.generation < chunk_map.gen_to)";

// gen_to of a chunk_map row that is still current: 2^31-1, which SQLite stores
// in 4 bytes (INT64_MAX took 8 in every current row; schema 2 and older).
// Generation ids stay far below it.
inline constexpr int64_t kOpenEnd = INT32_MAX;
inline constexpr int64_t kOpenEndBeforeSchema3 = INT64_MAX;
static_assert(kMaxGenerationId < static_cast<GenerationId>(kOpenEnd), "a generation id must stay below kOpenEnd");

struct Repository::Impl {
  std::string path;
  RepoConfig config;
  std::unique_ptr<Storage> storage;
  std::optional<RepoLock> lock;  // held when opened for writing
  bool exclusive = false;        // the lock excludes backups too (not OpenOptions::shared on S3)
  bool maintenance = false;      // exclusive, or OpenOptions::backups_alongside: forget() and gc() may run
  Logger* log = nullptr;
  NullLogger null_log;
  Env* env = nullptr;  // OpenOptions::env: null is the real file system and SQLite's own VFS

  std::mutex mu;  // guards db and every statement on it
  std::optional<sql::Db> db;

  std::shared_ptr<const Keys> keys;  // encrypted repositories
  std::unique_ptr<Secret> master;    // encrypted: the master key (locked memory)
  std::string key_id;                // the key file that opened it ("" from a paper key)
  std::string key_file;              // keyfile mode: its path
  std::string index_file;           // <repo>/index.sqlite, or in the cache dir when encrypted
  // Packs gc condemned (repo/condemned.h), read by a writer's open: a backup
  // deduplicates against none of them, and the index moves a chunk out of one
  // when it learns another pack that holds it (gc's rewrite).
  std::set<std::string> condemned_packs;
  // Opened with index_as_is: why no index is open (missing, damaged, newer), if so.
  std::optional<Error> index_problem;
  bool index_problem_newer = false;

  Logger& logger() { return log != nullptr ? *log : null_log; }
  std::string index_path() const { return index_file; }
  Env& fs_env() const { return env != nullptr ? *env : Env::real(); }
  // Removes the index's files (database, WAL, shared memory); missing ones are fine.
  void remove_index_files();
  std::unique_ptr<ChunkCodec> make_codec() const {
    return std::make_unique<ChunkCodec>(config.compression_level, keys);
  }
  // Manifests of an encrypted repository are sealed with the metadata key,
  // bound to their name (docs/FORMAT.md, "Encryption"). Identity otherwise.
  Result<std::vector<uint8_t>> seal_metadata(const std::string& name, std::vector<uint8_t> bytes) const;
  Result<std::vector<uint8_t>> open_metadata(const std::string& name, std::vector<uint8_t> bytes) const;

  // Encrypted repositories: finds the key file the passphrase opens, derives the keys.
  Status unlock(const OpenOptions& options);

  // --- index (repository.cpp); REQUIRES: mu held ---
  // Opens (creating when missing) the index; `*created` says it was new.
  Status open_index(bool* created = nullptr);
  Status create_schema();
  // index_as_is (repair.cpp): opens the index only when it exists and is
  // usable, recording why not in index_problem otherwise. Never writes.
  void open_index_as_is();
  // The committed generations whose manifests the index does not know yet.
  Result<std::vector<GenerationId>> unindexed_manifests();
  // Tombstones ("pruned/<id>") whose generation the index does not show pruned.
  Result<std::vector<GenerationId>> pending_tombstones();
  // Replays manifests (and pack trailers, except those of `skip_packs`: a
  // committing writer's own) the index does not know yet, in id order. A
  // manifest older than an indexed generation of one of its devices (two
  // hosts committed in the same instant) sets *disorder and stops, or, with
  // disorder null, is left unindexed.
  Status replay_manifests(const std::set<std::string>& skip_packs, bool* disorder);
  // Indexes the packs among `packs` the index does not know (their trailers,
  // and one blob header per chunk for its raw size), except `skip`.
  Status learn_packs(const std::vector<std::string>& packs, const std::set<std::string>& skip);
  // The newest "gc/<ms>" mark when this index has not seen it (another
  // host's gc deleted or rewrote packs), nullopt otherwise.
  Result<std::optional<std::string>> newer_gc_mark();
  Status note_gc_mark(const std::string& mark);
  // Reads condemned_packs from storage.
  Status load_condemned_packs();
  // "" without condemned packs; otherwise fills the connection's temporary
  // table of them and returns an SQL condition, true for a chunks.pack that
  // is one of them: "pack IN (…)".
  Result<std::string> condemned_pack_condition();
  // Forgets generations whose manifests another host's gc deleted (with the
  // map rows only they read) and packs that are gone, learns new packs, then
  // notes `mark`.
  Status reconcile_packs(const std::string& mark);
  // replay_manifests (rebuilding the index when they arrived out of order),
  // reconcile_packs after another host's gc, then applies pending tombstones.
  Status sync_index();
  Result<int64_t> device_rowid(const std::string& name, bool create);
  Result<std::optional<int64_t>> chunk_rowid(const ChunkId& id);
  Result<int64_t> pack_rowid(const std::string& name, uint64_t size, bool create);
  // Applies one device's delta as generation `gen` (used by commit and replay).
  Status apply_delta(int64_t device, GenerationId gen, bool inherit, uint64_t chunk_count,
                     const std::vector<MapEntry>& delta);
  Status insert_generation(const GenerationInfo& g);
  Status insert_device_record(GenerationId gen, const DeviceRecord& d);
  Result<std::vector<GenerationInfo>> load_generations(std::optional<GenerationId> only);
  Result<std::optional<LastGood>> last_good_locked(std::string_view device);
  // The current (gen_to = open) chunk of every index of a device: index -> chunk id.
  Result<std::vector<std::pair<uint64_t, ChunkId>>> live_map(int64_t device);
  // The current chunk at each of `indices` of a device (nullopt: zeros), one
  // primary-key lookup each: O(indices), whatever the size of the map.
  Result<std::vector<std::optional<ChunkId>>> live_chunks_at(int64_t device, const std::vector<uint64_t>& indices);
  Result<DeviceImage> device_image_locked(GenerationId generation, std::string_view device);
  Result<std::vector<std::optional<ChunkId>>> chunk_ids_locked(GenerationId generation, std::string_view device,
                                                               std::span<const uint64_t> indexes);
};

// Codecs (each holds zstd contexts) reused by worker threads. Thread-safe.
class CodecPool {
 public:
  explicit CodecPool(const Repository::Impl& repo) : repo_(repo) {}
  std::unique_ptr<ChunkCodec> take() {
    std::lock_guard g(mu_);
    if (free_.empty()) return repo_.make_codec();
    auto c = std::move(free_.back());
    free_.pop_back();
    return c;
  }
  void give(std::unique_ptr<ChunkCodec> c) {
    std::lock_guard g(mu_);
    free_.push_back(std::move(c));
  }
  // A codec taken for a scope and given back when it ends, whichever way
  // (a view from ChunkCodec::seal_view stays valid until then).
  class Lease {
   public:
    explicit Lease(CodecPool& pool) : pool_(pool), codec_(pool.take()) {}
    ~Lease() { pool_.give(std::move(codec_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ChunkCodec& operator*() const { return *codec_; }
    ChunkCodec* operator->() const { return codec_.get(); }

   private:
    CodecPool& pool_;
    std::unique_ptr<ChunkCodec> codec_;
  };

 private:
  const Repository::Impl& repo_;
  std::mutex mu_;
  std::vector<std::unique_ptr<ChunkCodec>> free_;
};

// "pruned/00000000000000000042" and its inverse.
std::string tombstone_name(GenerationId id);
std::optional<GenerationId> parse_tombstone_name(std::string_view name);

// Fresh random bytes (getrandom(2)).
Status random_bytes(std::span<uint8_t> out);
std::string random_hex(size_t bytes);
int64_t now_ms();
std::string rfc3339_utc(int64_t ms);

Result<RepoConfig> read_config(Storage& storage, const std::string& path);

}  // namespace blkvault::repo
