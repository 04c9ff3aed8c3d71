// repo/repository.h — the repository engine: generations of device images,
// deduplicated into packs, described by immutable manifests, indexed in SQLite.
//
// Truth and cache (docs/FORMAT.md):
//   * "config"            immutable, written once by init_repository();
//   * "packs/xx/<hex>"    immutable, self-describing (blob headers + trailer);
//   * "manifests/<gen>"   immutable, one per committed generation: its devices,
//                         their sizes and CBT baselines, and each device's chunk
//                         map as a delta against its parent generation;
//   * "index.sqlite"      a cache of all of the above (plus the history of failed
//                         runs) that Repository::open brings up to date and that
//                         rebuild_index() recreates from packs and manifests alone.
//
// Commit order (what makes a crash at any point safe):
//   packs fsynced and published (each then noted in the index, so a failed or
//   killed run's packs are reused by the next) -> manifest fsynced and
//   published -> index txn.
// A crash before the manifest leaves only unreferenced packs (the next backup
// deduplicates against those the index noted; gc reclaims what stays unused);
// a crash after it leaves a manifest the index does not know yet, which the next
// open replays. A generation is visible (list, restore) only once committed.
//
// Thread-safety: Repository's methods may be called from several threads (one
// SQLite connection behind a mutex). DeviceWriter::put is the one hot path meant
// to be called concurrently; everything else on a writer is single-threaded.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/cancel.h"
#include "common/env.h"
#include "common/error.h"
#include "common/logger.h"
#include "common/rate_limiter.h"
#include "repo/chunk_codec.h"
#include "repo/crypto.h"
#include "repo/storage.h"

namespace blkvault::repo {

inline constexpr uint32_t kFormatVersion = 1;

using GenerationId = uint64_t;
// The largest generation id: the index marks a current chunk_map row with
// gen_to = 2^31-1 (schema 3), so ids stay below it. A manifest with a larger id
// is damage; a repository that reached it takes no more backups.
inline constexpr GenerationId kMaxGenerationId = (GenerationId{1} << 31) - 2;

struct RepoConfig {
  uint32_t format_version = kFormatVersion;
  std::string id;                    // 32 hex digits, random at init
  uint64_t chunk_size = 1 << 20;     // power of two, 64 KiB .. 16 MiB
  int compression_level = 3;         // zstd level, 1 .. 19
  uint64_t pack_size = 64ull << 20;  // a pack is finished once it reaches this
  ChunkKey chunk_key{};              // XXH3 secret for chunk ids (derived from the master key when encrypted)
  std::string created;               // RFC 3339 UTC
  Cipher cipher = Cipher::kNone;     // kNone: not encrypted
  std::string key_mode;              // encrypted: "repokey" (keys/ in the repository) or "keyfile"
};

struct InitOptions {
  uint64_t chunk_size = 1 << 20;
  int compression_level = 3;
  uint64_t pack_size = 64ull << 20;
  // Encryption (docs/SECURITY.md): a cipher other than kNone needs a passphrase.
  Cipher cipher = Cipher::kNone;
  std::string key_mode = "repokey";  // or "keyfile": the key goes to key_file, outside the repository
  std::string key_file;
  std::string passphrase;
  KdfParams kdf;
  std::string cache_dir;             // where the index of an encrypted repository lives (see OpenOptions)
};

// Creates a repository at `path`: a new directory, or an existing empty one.
// kInvalidArgument for a bad chunk size/level or a non-empty directory (naming
// what is there: "already a blkvault repository" or "not empty").
Status init_repository(const std::string& path, const InitOptions& options);

// kPruned: removed by prune (a tombstone "pruned/<id>" records it); its manifest
// stays while a remaining generation is stored as a delta against it.
enum class GenerationState { kInProgress, kComplete, kPartial, kFailed, kPruned };
std::string_view to_string(GenerationState state);  // "in-progress", "complete", ...

// What the CBT audit of an incremental backup checked and found
// (docs/FORMAT.md, "Manifests": `cbt_audit`). The repository only stores it.
struct CbtAudit {
  struct Range {
    uint64_t offset_bytes = 0;
    uint64_t length_bytes = 0;
    bool operator==(const Range&) const = default;
  };
  uint64_t seed = 0;              // the run's seed (replay: backup --cbt-audit-seed)
  double percent = 0;             // the sample rate asked for
  GenerationId against = 0;       // the generation whose chunk map was compared
  uint64_t unchanged_chunks = 0;  // chunks the CBT called unchanged (the population)
  uint64_t sampled_chunks = 0;    // re-read and compared
  uint64_t sampled_bytes = 0;
  std::vector<Range> missed;      // merged byte ranges that differed: writes the CBT missed
  bool missed_write() const { return !missed.empty(); }
  bool operator==(const CbtAudit&) const = default;
};

// One device in one generation.
struct DeviceRecord {
  std::string name;                  // the device as the user named it ("/dev/sdb")
  uint64_t size_bytes = 0;
  bool complete = true;              // false: it failed in a --partial generation
  std::string error;                 // why, when !complete
  std::optional<GenerationId> parent;  // the generation its chunk map is a delta against
  std::string baseline;              // opaque CBT baseline (cbt::Baseline::encode), "" if none
  std::string mode;                  // "full" or "incremental"
  std::string reason;                // why a full read ("no previous backup", ...), "" otherwise
  uint64_t changed_bytes = 0;        // what the CBT said changed (device size for a full read)
  uint64_t read_bytes = 0;           // bytes handed to put()
  uint64_t new_bytes = 0;            // raw bytes of chunks not already in the repository
  uint64_t stored_bytes = 0;         // what those took in packs (headers included)
  uint64_t chunks_changed = 0;       // map entries recorded: chunks that differ from the
                                     // parent (every non-zero chunk without a parent)
  std::optional<CbtAudit> cbt_audit;  // nullopt: no audit ran (full read, --cbt-audit 0, older blkvault)
};

struct GenerationInfo {
  GenerationId id = 0;
  GenerationState state = GenerationState::kInProgress;
  int64_t started_ms = 0;            // Unix time, milliseconds
  int64_t finished_ms = 0;
  std::string host;
  std::string tool_version;
  std::string error;                 // why it failed (kFailed)
  std::vector<DeviceRecord> devices;
  const DeviceRecord* device(std::string_view name) const;
};

// Where one chunk of a device lives.
struct ChunkRef {
  uint64_t chunk_index = 0;
  ChunkId id{};
  uint32_t pack = 0;    // index into DeviceImage::packs
  uint32_t length = 0;  // header + stored bytes
  uint64_t offset = 0;  // of the blob header in the pack
  uint32_t raw_size = 0;
};

// A device as of one generation: its size and its non-zero chunks in order
// (every chunk index not listed reads as zeros). About 48 bytes per chunk.
struct DeviceImage {
  GenerationId generation = 0;
  std::string device;
  uint64_t size_bytes = 0;
  uint64_t chunk_size = 0;
  std::vector<std::string> packs;  // names of the packs the chunks sit in
  std::vector<ChunkRef> chunks;
};

// Where a restore writes. Called from several threads, each chunk once.
class RestoreSink {
 public:
  virtual ~RestoreSink() = default;
  virtual Status write_at(uint64_t offset, std::span<const uint8_t> data) = 0;
  // [offset, offset + length) must read as zeros afterwards (a hole in the map).
  virtual Status zero(uint64_t offset, uint64_t length) = 0;
};

struct RestoreStats {
  uint64_t bytes_written = 0;  // data chunks
  uint64_t bytes_zero = 0;     // holes
};

// A damaged chunk and everything it spoils.
struct Damage {
  std::string what;  // "chunk 3f2a… in pack packs/ab/ab12… at offset 4096: <why>"
  struct Range {
    GenerationId generation = 0;
    std::string device;
    uint64_t offset_bytes = 0;
    uint64_t length_bytes = 0;
  };
  std::vector<Range> affected;
};

// Which packs a data verify reads (docs/FORMAT.md, "Verification progress").
// The filters apply in this order to the packs in scope: part/parts or a
// random percent/bytes, then older_than; the rest are checked least recently
// verified first (never verified first, ties by name), and a budget stops
// starting new packs once it is spent (the first pack always runs).
struct PackSelection {
  uint32_t part = 0, parts = 0;        // 1 <= part <= parts: the packs whose XXH3-64 of the name % parts == part - 1
  double percent = 0;                  // (0, 100]: ceil(percent% of the packs), the lowest XXH3-64(name, seed)
  uint64_t bytes = 0;                  // > 0: the same random order, packs while their sizes total at most this
  uint64_t seed = 0;                   // for percent and bytes
  std::optional<int64_t> older_than_ms;  // only packs never verified or last verified at least this long ago
  std::optional<int64_t> budget_ms;      // stop starting packs this long after verify began
  bool any() const { return parts != 0 || percent > 0 || bytes > 0 || older_than_ms || budget_ms; }
};

struct VerifyOptions {
  bool data = false;                        // read, decompress and re-hash every chunk
  std::optional<GenerationId> generation;   // only what this generation references
  size_t threads = 2;
  PackSelection select;                     // with data: which packs to read (default: all)
  std::function<int64_t()> clock_ms;        // Unix ms (tests); null: the system clock
  // With data: told once, before reading, how many pack bytes the selection holds.
  std::function<void(uint64_t bytes)> planned;
};

// One pack's last data verification (docs/FORMAT.md, "Verification progress").
struct PackVerification {
  std::string name;                   // "packs/3f/3f2a…"
  uint64_t size_bytes = 0;
  std::optional<int64_t> verified_ms; // Unix ms of its last check by verify --data; nullopt: never
  bool ok = false;                    // that check found nothing wrong
  std::string problem;                // else the first thing it found
};

struct VerifyReport {
  uint64_t generations = 0;
  uint64_t packs_in_scope = 0;       // packs the generation(s) use
  uint64_t packs_selected = 0;       // after the selection's filters (= packs_in_scope without one)
  std::vector<std::string> packs_checked;  // names, in check order (with data: selection order)
  uint64_t packs = 0;                // packs checked
  uint64_t chunks = 0;
  uint64_t bytes_read = 0;           // with data: bytes of packs read
  std::vector<std::string> problems; // metadata problems, one sentence each
  std::vector<Damage> damage;        // damaged or missing chunks
  bool clean() const { return problems.empty() && damage.empty(); }
};

struct GcOptions {
  bool dry_run = false;
  // A pack whose live bytes are below this fraction of its size is rewritten;
  // one with no live bytes is deleted.
  double repack_below = 0.5;
  // Backups on object storage run alongside gc, so it condemns before it
  // deletes (repo/condemned.h). It waits up to this long for the backups that
  // were running when it condemned to end, and then deletes in this run; what
  // is still condemned after the wait is left to a later gc.
  double wait_s = 0;
};

struct GcReport {
  uint64_t packs_before = 0, bytes_before = 0;
  uint64_t packs_after = 0, bytes_after = 0;
  uint64_t packs_deleted = 0, packs_rewritten = 0;
  uint64_t chunks_deleted = 0;
  uint64_t manifests_deleted = 0;
  uint64_t leftovers_deleted = 0;  // unindexed packs and temp files of interrupted writes
  // Condemned and left for a later gc: backups that were running when it was
  // condemned are still running (their holders in waiting_for).
  uint64_t packs_pending = 0, bytes_pending = 0, manifests_pending = 0;
  std::vector<std::string> waiting_for;
  std::vector<std::string> warnings;  // e.g. a damaged pack that could not be rewritten
};

// One key file of an encrypted repository.
struct KeyInfo {
  std::string id;
  std::string created;
  std::string where;     // "keys/<id>" or the key file's path
  bool current = false;  // the one that opened this session
};

struct RepoStats {
  uint64_t packs = 0;
  uint64_t pack_bytes = 0;
  uint64_t chunks = 0;
  uint64_t chunk_raw_bytes = 0;
};

class Repository;
struct DeviceDiff;  // repo/diff.h
class RestoreSource;  // repo/delta_restore.h
struct DeltaOptions;
struct DeltaStats;
struct IndexCheck;  // repo/repair.h
struct RepairPacksOptions;
struct RepairPacksReport;
struct MissingChunk;

// Writes one device of a generation. put() may be called from many threads at
// once; a chunk index is put at most once. Chunks never put are inherited from
// the parent generation (incremental), or are zeros when there is no parent.
class DeviceWriter {
 public:
  virtual ~DeviceWriter() = default;
  // Hashes, zero-checks, deduplicates, compresses and stores one chunk.
  // REQUIRES: data.size() == chunk size, or the remainder for the last chunk.
  virtual Status put(uint64_t chunk_index, std::span<const uint8_t> data) = 0;
  // What to record for the device; call before commit.
  virtual void set_baseline(std::string baseline) = 0;
  virtual void set_mode(std::string mode, std::string reason, uint64_t changed_bytes) = 0;
  virtual void set_cbt_audit(CbtAudit audit) = 0;
  // Marks the device failed: with commit(partial=true) the generation is kept
  // without it; with commit(partial=false) commit fails.
  virtual void fail(const Error& error) = 0;
  virtual std::optional<GenerationId> parent() const = 0;
  virtual const DeviceRecord& record() const = 0;  // figures so far (single-threaded use)
};

class GenerationWriter {
 public:
  virtual ~GenerationWriter() = default;  // aborts when not committed
  virtual GenerationId id() const = 0;
  // Starts a device of `size_bytes`. With `inherit`, its map is a delta against
  // the last generation in which it completed (its parent; chunks not put are
  // the parent's); without, it is a full image (chunks not put are zeros) and
  // has no parent. kInvalidArgument when the device was already added.
  virtual Result<DeviceWriter*> add_device(const std::string& name, uint64_t size_bytes, bool inherit) = 0;
  // Publishes packs, the manifest, then the index. With `partial`, devices that
  // fail()ed are recorded as such and the rest commit (state kPartial);
  // without, any failed device fails the commit. Returns the committed generation.
  virtual Result<GenerationInfo> commit(bool partial) = 0;
  // Records the generation as failed with `why`; nothing becomes visible.
  virtual void abort(const Error& why) = 0;
};

struct OpenOptions {
  bool write = false;          // take the writer lock
  // With write, on object storage: a backup's shared hold (a backup marker,
  // repo/lock.h) instead of the exclusive lock, so backups from many hosts run
  // at once while prune, gc, index rebuilds and key changes wait for them.
  // Such a Repository may only begin_generation(). A local repository's
  // writers take turns all the same (one SQLite index).
  bool shared = false;
  // With write and not shared, on object storage: the exclusive lock as prune
  // and gc take it, which lets backups run alongside (gc condemns before it
  // deletes, docs/FORMAT.md); without, it waits for running backups and holds
  // new ones off (index rebuilds, key changes).
  bool backups_alongside = false;
  double lock_wait_s = 0;      // how long to wait for it
  Logger* log = nullptr;       // progress notes (index sync/rebuild); may be null
  // The file-system seam of a local repository and of its index (common/env.h;
  // tests: power loss, tests/fault_env.h). Null: the real file system and
  // SQLite's own VFS. Not owned; must outlive the Repository.
  Env* env = nullptr;
  // Wraps the repository's storage (tests: fault injection). Null: none.
  std::function<std::unique_ptr<Storage>(std::unique_ptr<Storage>)> wrap_storage;
  // Encrypted repositories: asked once, only when needed.
  std::function<Result<std::string>()> passphrase;
  // Instead of a passphrase: the master key's paper backup (blkvault key import).
  std::string paper_key;
  std::string key_file;   // keyfile mode: the key file's path
  // The index of an encrypted repository is kept on this host, never in the
  // repository: <cache_dir>/<repository id>/index.sqlite. Empty: $BLKVAULT_CACHE_DIR,
  // else /var/cache/blkvault for root, else ~/.cache/blkvault.
  std::string cache_dir;
  // Object storage: every byte of object data sent to the store passes this
  // shared limit (s3::ClientOptions::upload_limiter). Ignored for a directory.
  // Null: no limit.
  std::shared_ptr<RateLimiter> upload_limiter;
  // repair index: leave the index as it is (never create, rebuild or replay
  // it on open). When it is missing or unusable no index is open: then only
  // config(), storage(), check_index() and rebuild_index() may be called.
  bool index_as_is = false;
};

// The last generation in which a device completed: what an incremental backup
// builds on.
struct LastGood {
  GenerationId generation = 0;
  DeviceRecord record;
};

class Repository {
 public:
  // Opens the repository at `path` (a directory). kNotFound when nothing is
  // there, kInvalidArgument when it is not a blkvault repository, kUnsupported
  // for a newer format, kLocked when `write` and another writer holds it.
  // Brings the index up to date with the manifests (replaying any a crash left
  // unindexed; rebuilding it when missing or damaged).
  static Result<std::unique_ptr<Repository>> open(const std::string& path, const OpenOptions& options);
  ~Repository();

  const RepoConfig& config() const;
  // The derived keys of an encrypted repository (null when not encrypted).
  std::shared_ptr<const Keys> keys() const;
  std::string index_path() const;
  Storage& storage();
  const std::string& path() const;

  // Every generation (all states), oldest first.
  Result<std::vector<GenerationInfo>> generations();
  Result<GenerationInfo> generation(GenerationId id);
  // "latest" (newest complete or partial) or a decimal id. kInvalidArgument for
  // a malformed spec, kNotFound for an unknown or not-committed generation.
  Result<GenerationId> resolve(std::string_view spec);
  Result<std::optional<LastGood>> last_good(std::string_view device);

  // REQUIRES: opened with write.
  Result<std::unique_ptr<GenerationWriter>> begin_generation(std::string host, std::string tool_version);

  // kNotFound when the generation lacks the device; kInvalidArgument when the
  // device failed in it.
  Result<DeviceImage> device_image(GenerationId generation, std::string_view device);
  // The chunk ids of `device` at `generation` for the chunk indexes in
  // `indexes` (REQUIRES: sorted ascending), from the index in one pass over the
  // device's map: nullopt where the chunk reads as zeros. Same errors as
  // device_image(). Used by the CBT audit, which only ever errs towards a full
  // read, so the index is not cross-checked against the manifests here.
  Result<std::vector<std::optional<ChunkId>>> chunk_ids(GenerationId generation, std::string_view device,
                                                        std::span<const uint64_t> indexes);
  // Reads, checks (hash, size) and decompresses one chunk of `image`. Thread-safe.
  Result<std::vector<uint8_t>> read_chunk(const DeviceImage& image, const ChunkRef& ref, ChunkCodec& codec);
  // Writes the image to `sink` with `threads` workers, checking every chunk.
  // `progress` receives increments (bytes just written), one call at a time.
  Result<RestoreStats> restore(const DeviceImage& image, RestoreSink& sink, size_t threads,
                               const CancelToken* cancel, const std::function<void(uint64_t bytes)>& progress);

  // Writes to `sink` only the chunks of `image` that `current` (what the
  // target holds now) does not already have (repo/delta_restore.h), checking
  // every chunk it writes. `progress` receives increments of bytes handled.
  Result<DeltaStats> restore_delta(const DeviceImage& image, RestoreSource& current, RestoreSink& sink,
                                   const DeltaOptions& options, const CancelToken* cancel,
                                   const std::function<void(uint64_t bytes)>& progress);

  // What changed in `device` between generations `a` and `b` (either order),
  // from the index alone (repo/diff.h). kNotFound when either generation is not
  // committed or lacks the device; kInvalidArgument when it failed in either.
  Result<DeviceDiff> diff(GenerationId a, GenerationId b, std::string_view device);

  // Checks the index, the manifests and the packs in scope; with data, reads the
  // selected packs' chunks and records each pack's result as it finishes (so an
  // interrupted run keeps what it did). Damage is reported, not returned as an
  // error; an error means the check itself could not go on (storage, cancel).
  // `progress` receives increments (pack bytes just checked), one call at a time.
  Result<VerifyReport> verify(const VerifyOptions& options, const CancelToken* cancel,
                              const std::function<void(uint64_t bytes)>& progress);
  Result<RepoStats> stats();
  // Every pack the remaining generations use, by name, with its last data
  // verification (verify --data records them; lost with the index).
  Result<std::vector<PackVerification>> pack_verifications();

  // Recreates the index from packs and manifests. REQUIRES: opened with write.
  Status rebuild_index();

  // Repairs (repo/repair.h). check_index: what is wrong with the index as
  // opened (REQUIRES: opened with index_as_is). repair_packs: finds damaged
  // and missing chunks; with apply moves damaged blobs aside (REQUIRES: opened
  // with write for apply). missing_chunks: what the next backup of `device`
  // must re-read whatever its CBT says.
  Result<IndexCheck> check_index();
  Result<RepairPacksReport> repair_packs(const RepairPacksOptions& options, const CancelToken* cancel,
                                         const std::function<void(uint64_t bytes)>& progress);
  Result<std::vector<MissingChunk>> missing_chunks(std::string_view device);

  // Key management of an encrypted repository (kInvalidArgument when it is
  // not encrypted). REQUIRES: opened with write, except list_keys/paper_key.
  Result<std::vector<KeyInfo>> list_keys();
  // A new repokey (keys/<id>) for `passphrase`; returns its id. In keyfile
  // mode: rewrites the key file (there is one), i.e. changes its passphrase.
  Result<std::string> add_key(std::string_view passphrase, const KdfParams& kdf);
  // Refuses the key that opened this session and the last key.
  Status remove_key(std::string_view id);
  std::string paper_key() const;

  // Removes committed generations: publishes a tombstone for each, then marks
  // it pruned in the index. Space comes back with gc(). REQUIRES: opened with write.
  Status forget(const std::vector<GenerationId>& ids);
  // Reclaims space no remaining generation uses (docs/FORMAT.md, "Garbage
  // collection"): deletes unreferenced packs, rewrites mostly-garbage ones,
  // deletes manifests no remaining generation needs. Crash-safe at every step;
  // a rerun finishes the job. REQUIRES: opened with write.
  Result<GcReport> gc(const GcOptions& options, const CancelToken* cancel);

  struct Impl;

 private:
  explicit Repository(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace blkvault::repo
