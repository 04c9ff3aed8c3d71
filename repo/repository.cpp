// Repository: init, open, the index schema, syncing the index with the
// repository's immutable files, and the read-side queries.
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "common/file_io.h"
#include "repo/condemned.h"
#include "repo/json_fields.h"
#include "repo/pack.h"
#include "repo/repository_impl.h"
#include "repo/s3_storage.h"

namespace blkvault::repo {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// 2: generation_devices.cbt_audit. A version-1 index is migrated in place
// (one ALTER TABLE: the column's default is "no audit ran", which is what
// every generation recorded before it meant).
// 3: no chunk_map_by_chunk index (gc, its only reader, scans chunk_map once
// instead) and kOpenEnd = 2^31-1 as a current row's gen_to: together a quarter
// of the index's bytes per changed chunk (docs/BENCHMARKS.md). Migrated in
// place from 2 (drop the index, rewrite the current rows' gen_to).
constexpr int kSchemaVersion = kIndexSchemaVersion;
constexpr uint64_t kMinChunk = 64 << 10;
constexpr uint64_t kMaxChunk = 16 << 20;

constexpr std::string_view kSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE packs(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER NOT NULL);
CREATE TABLE chunks(id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, pack INTEGER,
                    offset INTEGER, length INTEGER, raw_size INTEGER);
CREATE INDEX chunks_by_pack ON chunks(pack);
CREATE TABLE devices(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE generations(id INTEGER PRIMARY KEY, state TEXT NOT NULL, started_ms INTEGER NOT NULL,
                         finished_ms INTEGER NOT NULL, host TEXT NOT NULL, tool_version TEXT NOT NULL,
                         error TEXT NOT NULL DEFAULT '');
CREATE TABLE generation_devices(generation INTEGER NOT NULL, device INTEGER NOT NULL, position INTEGER NOT NULL,
                         size_bytes INTEGER NOT NULL, complete INTEGER NOT NULL, error TEXT NOT NULL,
                         parent INTEGER, baseline TEXT NOT NULL, mode TEXT NOT NULL, reason TEXT NOT NULL,
                         changed_bytes INTEGER NOT NULL, read_bytes INTEGER NOT NULL, new_bytes INTEGER NOT NULL,
                         stored_bytes INTEGER NOT NULL, chunks_changed INTEGER NOT NULL,
                         cbt_audit TEXT NOT NULL DEFAULT '',
                         PRIMARY KEY(generation, device)) WITHOUT ROWID;
CREATE TABLE chunk_map(device INTEGER NOT NULL, gen_to INTEGER NOT NULL, chunk_index INTEGER NOT NULL,
                       gen_from INTEGER NOT NULL, chunk INTEGER NOT NULL,
                       PRIMARY KEY(device, gen_to, chunk_index)) WITHOUT ROWID;
)sql";

Status check_init_options(const InitOptions& o) {
  if (o.chunk_size < kMinChunk || o.chunk_size > kMaxChunk || (o.chunk_size & (o.chunk_size - 1)) != 0) {
    return fail(ErrorCode::kInvalidArgument, "chunk size " + std::to_string(o.chunk_size) +
                                                 " is not a power of two from 64 KiB to 16 MiB");
  }
  if (o.compression_level < 1 || o.compression_level > 19) {
    return fail(ErrorCode::kInvalidArgument,
                "compression level " + std::to_string(o.compression_level) + " is not between 1 and 19");
  }
  if (o.pack_size < o.chunk_size || o.pack_size > (4ull << 30)) {
    return fail(ErrorCode::kInvalidArgument,
                "pack size " + std::to_string(o.pack_size) + " is not between the chunk size and 4 GiB");
  }
  return {};
}

std::string config_json(const RepoConfig& c) {
  json j = {{"blkvault_repository", c.format_version},
            {"id", c.id},
            {"chunk_size", c.chunk_size},
            {"compression", {{"algorithm", "zstd"}, {"level", c.compression_level}}},
            {"pack_size", c.pack_size},
            {"created", c.created}};
  if (c.cipher == Cipher::kNone) {
    j["chunk_id"] = {{"algorithm", "xxh3-128-keyed"}, {"key", blkvault::to_hex(std::span<const uint8_t>(c.chunk_key))}};
    j["encryption"] = {{"cipher", "none"}};
  } else {
    // The chunk-id key is derived from the master key: nothing secret here.
    j["chunk_id"] = {{"algorithm", "xxh3-128-keyed"}, {"key", "derived"}};
    j["encryption"] = {{"cipher", std::string(to_string(c.cipher))}, {"key", c.key_mode}};
  }
  return j.dump(2) + "\n";
}

std::string_view state_name(GenerationState s) { return to_string(s); }

// Why generation `id` in `state` cannot be read: "generation 7 failed, ..." etc.
std::string not_committed(GenerationId id, GenerationState state) {
  const std::string g = "generation " + std::to_string(id);
  if (state == GenerationState::kPruned) return g + " was removed by prune";
  return g + " is " + std::string(to_string(state)) + ", not a committed backup";
}

Result<GenerationState> parse_state(const std::string& s) {
  for (auto st : {GenerationState::kInProgress, GenerationState::kComplete, GenerationState::kPartial,
                  GenerationState::kFailed, GenerationState::kPruned}) {
    if (s == to_string(st)) return st;
  }
  return fail(ErrorCode::kCorrupt, "index: unknown generation state '" + s + "'");
}

ChunkId to_chunk_id(std::span<const uint8_t> b) {
  ChunkId id{};
  std::copy_n(b.begin(), std::min<size_t>(b.size(), id.size()), id.begin());
  return id;
}

}  // namespace

std::string_view to_string(GenerationState state) {
  switch (state) {
    case GenerationState::kInProgress: return "in-progress";
    case GenerationState::kComplete: return "complete";
    case GenerationState::kPartial: return "partial";
    case GenerationState::kFailed: return "failed";
    case GenerationState::kPruned: return "pruned";
  }
  return "unknown";
}

const DeviceRecord* GenerationInfo::device(std::string_view name) const {
  for (const auto& d : devices) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

Status random_bytes(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("getrandom");
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

std::string random_hex(size_t bytes) {
  std::vector<uint8_t> b(bytes);
  if (!random_bytes(b)) {
    // getrandom cannot fail for small requests after boot; fall back to the clock.
    const auto t = std::chrono::steady_clock::now().time_since_epoch().count() ^ getpid();
    for (size_t i = 0; i < bytes; ++i) b[i] = static_cast<uint8_t>(t >> (8 * (i % 8)));
  }
  return blkvault::to_hex(std::span<const uint8_t>(b));
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc3339_utc(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<RepoConfig> read_config(Storage& storage, const std::string& path) {
  auto bytes = storage.get("config");
  if (!bytes) {
    if (bytes.error().code() == ErrorCode::kNotFound) {
      return fail(ErrorCode::kInvalidArgument, path + " is not a blkvault repository (it has no config file)");
    }
    return fail(std::move(bytes.error()).wrap("reading the repository config"));
  }
  RepoConfig c;
  try {
    // Another tool's "config" (a git directory's, restic's) is not damage.
    const std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
    if (text.find("blkvault_repository") == std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, path + " is not a blkvault repository (its config file is not ours)");
    }
    const json j = json::parse(bytes->begin(), bytes->end());
    if (!j.contains("blkvault_repository")) {
      return fail(ErrorCode::kInvalidArgument, path + " is not a blkvault repository (its config file is not ours)");
    }
    c.format_version = integer_field<uint32_t>(j, "blkvault_repository");
    if (c.format_version > kFormatVersion) {
      return fail(ErrorCode::kUnsupported, "repository " + path + " has format version " +
                                               std::to_string(c.format_version) + "; this blkvault reads up to " +
                                               std::to_string(kFormatVersion) + " (upgrade blkvault)");
    }
    c.id = j.at("id").get<std::string>();
    c.chunk_size = integer_field<uint64_t>(j, "chunk_size");
    c.compression_level = integer_field<int>(j.at("compression"), "level");
    c.pack_size = integer_field<uint64_t>(j, "pack_size");
    c.created = j.at("created").get<std::string>();
    if (j.contains("encryption")) {
      const auto name = j.at("encryption").at("cipher").get<std::string>();
      auto cipher = parse_cipher(name);
      if (!cipher) {
        return fail(ErrorCode::kUnsupported, "repository " + path + " is encrypted with " + name +
                                                 ", which this blkvault does not know (upgrade blkvault)");
      }
      c.cipher = *cipher;
      if (c.cipher != Cipher::kNone) {
        c.key_mode = j.at("encryption").at("key").get<std::string>();
        if (c.key_mode != "repokey" && c.key_mode != "keyfile") throw std::runtime_error("unknown key mode " + c.key_mode);
      }
    }
    if (c.cipher == Cipher::kNone) {
      const auto key = j.at("chunk_id").at("key").get<std::string>();
      if (!from_hex(key, c.chunk_key)) {
        throw std::runtime_error("chunk_id.key is not " + std::to_string(kChunkKeyBytes) + " bytes of hex");
      }
    }
  } catch (const std::exception& e) {
    return fail(ErrorCode::kCorrupt, "repository config " + path + "/config is damaged: " + e.what());
  }
  InitOptions o;
  o.chunk_size = c.chunk_size;
  o.compression_level = c.compression_level;
  o.pack_size = c.pack_size;
  if (auto st = check_init_options(o); !st) {
    return fail(ErrorCode::kCorrupt, "repository config " + path + "/config is damaged: " + st.error().message());
  }
  return c;
}

Status init_repository(const std::string& path, const InitOptions& options) {
  BLKVAULT_TRY(check_init_options(options));
  if (options.cipher != Cipher::kNone && options.passphrase.empty()) {
    return fail(ErrorCode::kInvalidArgument, "an encrypted repository needs a passphrase (it cannot be empty)");
  }
  std::unique_ptr<Storage> storage;
  if (is_remote_repository(path)) {
    // Object storage: the bucket is created when missing; the prefix must hold nothing.
    BLKVAULT_TRY_ASSIGN(auto s3, S3Storage::open(path));
    auto names = s3->list("");
    if (!names && names.error().code() == ErrorCode::kNotFound) {
      BLKVAULT_TRY(s3->client().create_bucket());
      names = s3->list("");
    }
    if (!names) return fail(std::move(names.error()).wrap("creating repository " + path));
    if (std::find(names->begin(), names->end(), "config") != names->end()) {
      return fail(ErrorCode::kInvalidArgument, path + " is already a repository (it has a config object)");
    }
    if (!names->empty()) {
      return fail(ErrorCode::kInvalidArgument, path + " is not empty (init needs a bucket or prefix with no objects)");
    }
    storage = std::move(s3);
  } else {
    std::error_code ec;
    const auto st = fs::symlink_status(path, ec);
    if (!ec && fs::exists(st)) {
      if (!fs::is_directory(st)) return fail(ErrorCode::kInvalidArgument, path + " exists and is not a directory");
      if (fs::exists(fs::path(path) / "config")) {
        return fail(ErrorCode::kInvalidArgument, path + " is already a repository (it has a config file)");
      }
      if (!fs::is_empty(path, ec)) {
        return fail(ErrorCode::kInvalidArgument, path + " is not empty (init needs a new or empty directory)");
      }
    } else {
      fs::create_directories(path, ec);
      if (ec) return fail(Error::from_errno("creating " + path, ec.value()));
    }
    ::chmod(path.c_str(), 0700);
    BLKVAULT_TRY_ASSIGN(auto local, LocalStorage::open(path));
    storage = std::move(local);
  }

  RepoConfig c;
  c.id = random_hex(16);
  c.chunk_size = options.chunk_size;
  c.compression_level = options.compression_level;
  c.pack_size = options.pack_size;
  c.created = rfc3339_utc(now_ms());
  c.cipher = options.cipher;
  if (c.cipher == Cipher::kNone) {
    BLKVAULT_TRY(random_bytes(c.chunk_key));
  } else {
    c.key_mode = options.key_mode;
    if (c.key_mode != "repokey" && c.key_mode != "keyfile") {
      return fail(ErrorCode::kInvalidArgument, "key mode '" + c.key_mode + "' is not repokey or keyfile");
    }
    if (c.key_mode == "keyfile" && options.key_file.empty()) {
      return fail(ErrorCode::kInvalidArgument, "keyfile mode needs the key file's path (--key-file)");
    }
    BLKVAULT_TRY(crypto_init());
    BLKVAULT_TRY_ASSIGN(auto master, new_master_key());
    const std::string key_id = random_hex(8);
    BLKVAULT_TRY_ASSIGN(auto key_text, wrap_master_key(*master, options.passphrase, options.kdf, key_id, c.created));
    const std::span key_bytes(reinterpret_cast<const uint8_t*>(key_text.data()), key_text.size());
    if (c.key_mode == "repokey") {
      BLKVAULT_TRY(storage->put("keys/" + key_id, key_bytes));
    } else {
      if (fs::exists(options.key_file)) {
        return fail(ErrorCode::kInvalidArgument, "key file " + options.key_file + " already exists");
      }
      BLKVAULT_TRY(write_file_atomic(options.key_file, key_text, 0600));
    }
  }
  const std::string text = config_json(c);
  BLKVAULT_TRY(storage->put("config", std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  // Create the index now, so a fresh repository is complete on disk.
  OpenOptions oo;
  oo.write = true;
  oo.key_file = options.key_file;
  oo.cache_dir = options.cache_dir;
  const std::string pass = options.passphrase;
  oo.passphrase = [pass]() -> Result<std::string> { return pass; };
  BLKVAULT_TRY_ASSIGN(auto repo, Repository::open(path, oo));
  return {};
}

// ---------------------------------------------------------------------------
// The index.

Status Repository::Impl::create_schema() {
  BLKVAULT_TRY(db->exec("PRAGMA journal_mode=WAL"));
  BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
  BLKVAULT_TRY(db->exec(kSchema));
  BLKVAULT_TRY_ASSIGN(auto st, db->prepare("INSERT INTO meta(key, value) VALUES ('repository', ?)"));
  BLKVAULT_TRY(st.bind(1, config.id).run());
  BLKVAULT_TRY(db->exec("PRAGMA user_version=" + std::to_string(kSchemaVersion)));
  return tx.commit();
}

Status Repository::Impl::open_index(bool* created) {
  const bool existed = fs::exists(index_path());
  if (created != nullptr) *created = !existed;
  BLKVAULT_TRY_ASSIGN(auto d, sql::Db::open(index_path(), env));
  db.emplace(std::move(d));
  // FULL: a commit is on disk before blkvault reports the generation done
  // (docs/FORMAT.md, "Durability").
  BLKVAULT_TRY(db->exec("PRAGMA synchronous=FULL"));
  if (!existed) return create_schema();
  BLKVAULT_TRY_ASSIGN(auto version, db->query_int("PRAGMA user_version"));
  if (version.value_or(0) == 0) {
    // Created but never initialised (killed during create_schema).
    auto tables = db->query_int("SELECT count(*) FROM sqlite_master WHERE name = 'meta'");
    if (tables && tables->value_or(0) == 0) return create_schema();
    return fail(ErrorCode::kCorrupt, "index " + index_path() + " has no schema version");
  }
  if (*version > kSchemaVersion) {
    // A newer blkvault's index: refuse it rather than rebuild it away under
    // that version (docs/FORMAT.md: a reader refuses versions it does not know).
    return fail(ErrorCode::kUnsupported, "index " + index_path() + " has schema version " + std::to_string(*version) +
                                             "; this blkvault knows up to " + std::to_string(kSchemaVersion) +
                                             " (upgrade blkvault, or delete the index: the next run rebuilds it "
                                             "from packs and manifests)");
  }
  if (*version == 1 || *version == 2) {
    // One transaction: a crash leaves the old version, migrated again next time.
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
    if (*version == 1) {
      BLKVAULT_TRY(db->exec("ALTER TABLE generation_devices ADD COLUMN cbt_audit TEXT NOT NULL DEFAULT ''"));
    }
    BLKVAULT_TRY(db->exec("DROP INDEX IF EXISTS chunk_map_by_chunk"));
    BLKVAULT_TRY(db->exec("UPDATE chunk_map SET gen_to = " + std::to_string(kOpenEnd) +
                          " WHERE gen_to = " + std::to_string(kOpenEndBeforeSchema3)));
    BLKVAULT_TRY(db->exec("PRAGMA user_version=" + std::to_string(kSchemaVersion)));
    BLKVAULT_TRY(tx.commit());
    *version = kSchemaVersion;
  }
  if (*version != kSchemaVersion) {
    return fail(ErrorCode::kCorrupt, "index " + index_path() + " has schema version " + std::to_string(*version) +
                                         ", expected " + std::to_string(kSchemaVersion));
  }
  BLKVAULT_TRY_ASSIGN(auto st, db->prepare("SELECT value FROM meta WHERE key = 'repository'"));
  BLKVAULT_TRY_ASSIGN(bool row, st.step());
  if (!row || st.text(0) != config.id) {
    return fail(ErrorCode::kCorrupt, "index " + index_path() + " belongs to another repository");
  }
  return {};
}

Result<int64_t> Repository::Impl::device_rowid(const std::string& name, bool create) {
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT id FROM devices WHERE name = ?"));
  q.bind(1, name);
  BLKVAULT_TRY_ASSIGN(bool row, q.step());
  if (row) return q.int64(0);
  if (!create) return fail(ErrorCode::kNotFound, "no backup of device " + name + " in the repository");
  BLKVAULT_TRY_ASSIGN(auto ins, db->prepare("INSERT INTO devices(name) VALUES (?)"));
  BLKVAULT_TRY(ins.bind(1, name).run());
  return db->last_insert_rowid();
}

Result<std::optional<int64_t>> Repository::Impl::chunk_rowid(const ChunkId& id) {
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT id FROM chunks WHERE hash = ?"));
  q.bind_blob(1, id);
  BLKVAULT_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<int64_t>();
  return std::optional<int64_t>(q.int64(0));
}

Result<int64_t> Repository::Impl::pack_rowid(const std::string& name, uint64_t size, bool create) {
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT id FROM packs WHERE name = ?"));
  q.bind(1, name);
  BLKVAULT_TRY_ASSIGN(bool row, q.step());
  if (row) return q.int64(0);
  if (!create) return fail(ErrorCode::kNotFound, "pack " + name + " is not in the index");
  BLKVAULT_TRY_ASSIGN(auto ins, db->prepare("INSERT INTO packs(name, size) VALUES (?, ?)"));
  BLKVAULT_TRY(ins.bind(1, name).bind(2, static_cast<int64_t>(size)).run());
  return db->last_insert_rowid();
}

Status Repository::Impl::apply_delta(int64_t device, GenerationId gen, bool inherit, uint64_t chunk_count,
                                     const std::vector<MapEntry>& delta) {
  const auto g = static_cast<int64_t>(gen);
  if (!inherit) {
    BLKVAULT_TRY_ASSIGN(auto all, db->prepare("UPDATE chunk_map SET gen_to = ? WHERE device = ? AND gen_to = ?"));
    BLKVAULT_TRY(all.bind(1, g).bind(2, device).bind(3, kOpenEnd).run());
  } else {
    BLKVAULT_TRY_ASSIGN(auto cut, db->prepare(
                                      "UPDATE chunk_map SET gen_to = ? WHERE device = ? AND gen_to = ? AND chunk_index >= ?"));
    BLKVAULT_TRY(cut.bind(1, g).bind(2, device).bind(3, kOpenEnd).bind(4, static_cast<int64_t>(chunk_count)).run());
  }
  BLKVAULT_TRY_ASSIGN(auto end_row, db->prepare(
                                        "UPDATE chunk_map SET gen_to = ? WHERE device = ? AND gen_to = ? AND chunk_index = ?"));
  BLKVAULT_TRY_ASSIGN(auto ins, db->prepare(
                                    "INSERT INTO chunk_map(device, gen_to, chunk_index, gen_from, chunk) VALUES (?, ?, ?, ?, ?)"));
  BLKVAULT_TRY_ASSIGN(auto find, db->prepare("SELECT id FROM chunks WHERE hash = ?"));
  BLKVAULT_TRY_ASSIGN(auto add_missing, db->prepare("INSERT INTO chunks(hash) VALUES (?)"));
  for (const auto& e : delta) {
    if (e.chunk_index >= chunk_count) {
      return fail(ErrorCode::kCorrupt, "generation " + std::to_string(gen) + ": chunk index " +
                                           std::to_string(e.chunk_index) + " is past the device's end");
    }
    const auto idx = static_cast<int64_t>(e.chunk_index);
    if (inherit) BLKVAULT_TRY(end_row.bind(1, g).bind(2, device).bind(3, kOpenEnd).bind(4, idx).run());
    if (!e.id) continue;
    find.bind_blob(1, *e.id);
    BLKVAULT_TRY_ASSIGN(bool row, find.step());
    int64_t chunk = 0;
    if (row) {
      chunk = find.int64(0);
      find.reset();
    } else {
      // Referenced but in no known pack: keep the reference; verify reports it.
      find.reset();
      BLKVAULT_TRY(add_missing.bind_blob(1, *e.id).run());
      chunk = db->last_insert_rowid();
    }
    BLKVAULT_TRY(ins.bind(1, device).bind(2, kOpenEnd).bind(3, idx).bind(4, g).bind(5, chunk).run());
  }
  return {};
}

Status Repository::Impl::insert_generation(const GenerationInfo& g) {
  BLKVAULT_TRY_ASSIGN(auto st, db->prepare(
                                   "INSERT OR REPLACE INTO generations(id, state, started_ms, finished_ms, host, tool_version, error) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)"));
  return st.bind(1, static_cast<int64_t>(g.id))
      .bind(2, state_name(g.state))
      .bind(3, g.started_ms)
      .bind(4, g.finished_ms)
      .bind(5, g.host)
      .bind(6, g.tool_version)
      .bind(7, g.error)
      .run();
}

Status Repository::Impl::insert_device_record(GenerationId gen, const DeviceRecord& d) {
  BLKVAULT_TRY_ASSIGN(int64_t dev, device_rowid(d.name, true));
  BLKVAULT_TRY_ASSIGN(auto pos, db->query_int("SELECT count(*) FROM generation_devices WHERE generation = " +
                                              std::to_string(gen)));
  BLKVAULT_TRY_ASSIGN(auto st, db->prepare(
                                   "INSERT INTO generation_devices(generation, device, position, size_bytes, complete, error, "
                                   "parent, baseline, mode, reason, changed_bytes, read_bytes, new_bytes, stored_bytes, "
                                   "chunks_changed, cbt_audit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  st.bind(1, static_cast<int64_t>(gen)).bind(2, dev).bind(3, pos.value_or(0));
  st.bind(4, static_cast<int64_t>(d.size_bytes)).bind(5, int64_t{d.complete ? 1 : 0}).bind(6, d.error);
  if (d.parent) {
    st.bind(7, static_cast<int64_t>(*d.parent));
  } else {
    st.bind_null(7);
  }
  st.bind(8, d.baseline).bind(9, d.mode).bind(10, d.reason);
  st.bind(11, static_cast<int64_t>(d.changed_bytes)).bind(12, static_cast<int64_t>(d.read_bytes));
  st.bind(13, static_cast<int64_t>(d.new_bytes)).bind(14, static_cast<int64_t>(d.stored_bytes));
  st.bind(15, static_cast<int64_t>(d.chunks_changed));
  st.bind(16, d.cbt_audit ? encode_cbt_audit(*d.cbt_audit) : std::string());
  return st.run();
}

Result<std::vector<GenerationInfo>> Repository::Impl::load_generations(std::optional<GenerationId> only) {
  std::string where = only ? " WHERE id = " + std::to_string(*only) : "";
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT id, state, started_ms, finished_ms, host, tool_version, error "
                                          "FROM generations" + where + " ORDER BY id"));
  std::vector<GenerationInfo> out;
  std::unordered_map<GenerationId, size_t> pos;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    GenerationInfo g;
    g.id = static_cast<GenerationId>(q.int64(0));
    BLKVAULT_TRY_ASSIGN(g.state, parse_state(q.text(1)));
    g.started_ms = q.int64(2);
    g.finished_ms = q.int64(3);
    g.host = q.text(4);
    g.tool_version = q.text(5);
    g.error = q.text(6);
    pos[g.id] = out.size();
    out.push_back(std::move(g));
  }
  std::string dwhere = only ? " WHERE gd.generation = " + std::to_string(*only) : "";
  BLKVAULT_TRY_ASSIGN(auto d, db->prepare(
                                  "SELECT gd.generation, dv.name, gd.size_bytes, gd.complete, gd.error, gd.parent, gd.baseline, "
                                  "gd.mode, gd.reason, gd.changed_bytes, gd.read_bytes, gd.new_bytes, gd.stored_bytes, "
                                  "gd.chunks_changed, gd.cbt_audit FROM generation_devices gd JOIN devices dv ON dv.id = gd.device" +
                                  dwhere + " ORDER BY gd.generation, gd.position"));
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, d.step());
    if (!row) break;
    auto it = pos.find(static_cast<GenerationId>(d.int64(0)));
    if (it == pos.end()) continue;
    DeviceRecord r;
    r.name = d.text(1);
    r.size_bytes = static_cast<uint64_t>(d.int64(2));
    r.complete = d.int64(3) != 0;
    r.error = d.text(4);
    if (!d.is_null(5)) r.parent = static_cast<GenerationId>(d.int64(5));
    r.baseline = d.text(6);
    r.mode = d.text(7);
    r.reason = d.text(8);
    r.changed_bytes = static_cast<uint64_t>(d.int64(9));
    r.read_bytes = static_cast<uint64_t>(d.int64(10));
    r.new_bytes = static_cast<uint64_t>(d.int64(11));
    r.stored_bytes = static_cast<uint64_t>(d.int64(12));
    r.chunks_changed = static_cast<uint64_t>(d.int64(13));
    if (std::string audit = d.text(14); !audit.empty()) {
      BLKVAULT_TRY_ASSIGN(r.cbt_audit, decode_cbt_audit(audit, "index " + index_path() + ": generation " +
                                                                   std::to_string(it->first) + " device " + r.name));
    }
    out[it->second].devices.push_back(std::move(r));
  }
  return out;
}

Result<std::optional<LastGood>> Repository::Impl::last_good_locked(std::string_view device) {
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare(
                                  "SELECT gd.generation FROM generation_devices gd JOIN generations g ON g.id = gd.generation "
                                  "JOIN devices dv ON dv.id = gd.device WHERE dv.name = ? AND gd.complete = 1 "
                                  "AND g.state IN ('complete', 'partial') ORDER BY gd.generation DESC LIMIT 1"));
  q.bind(1, device);
  BLKVAULT_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<LastGood>();
  const auto gen = static_cast<GenerationId>(q.int64(0));
  BLKVAULT_TRY_ASSIGN(auto gens, load_generations(gen));
  for (auto& d : gens.at(0).devices) {
    if (d.name == device) return std::optional<LastGood>(LastGood{gen, d});
  }
  return fail(ErrorCode::kInternal, "index: generation " + std::to_string(gen) + " lost device " + std::string(device));
}

Result<std::vector<std::pair<uint64_t, ChunkId>>> Repository::Impl::live_map(int64_t device) {
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT m.chunk_index, c.hash FROM chunk_map m JOIN chunks c ON c.id = m.chunk "
                                          "WHERE m.device = ? AND m.gen_to = ?"));
  q.bind(1, device).bind(2, kOpenEnd);
  std::vector<std::pair<uint64_t, ChunkId>> out;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    out.emplace_back(static_cast<uint64_t>(q.int64(0)), to_chunk_id(q.blob(1)));
  }
  return out;
}

Result<std::vector<std::optional<ChunkId>>> Repository::Impl::live_chunks_at(int64_t device,
                                                                            const std::vector<uint64_t>& indices) {
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT c.hash FROM chunk_map m JOIN chunks c ON c.id = m.chunk "
                                          "WHERE m.device = ? AND m.gen_to = ? AND m.chunk_index = ?"));
  std::vector<std::optional<ChunkId>> out;
  out.reserve(indices.size());
  for (uint64_t index : indices) {
    q.bind(1, device).bind(2, kOpenEnd).bind(3, static_cast<int64_t>(index));
    auto row = q.step();
    if (!row) {
      q.reset();
      return tl::unexpected(std::move(row).error());
    }
    out.push_back(*row ? std::optional<ChunkId>(to_chunk_id(q.blob(0))) : std::nullopt);
    q.reset();
  }
  return out;
}

Result<std::vector<std::optional<ChunkId>>> Repository::Impl::chunk_ids_locked(GenerationId generation,
                                                                                std::string_view device,
                                                                                std::span<const uint64_t> indexes) {
  if (!std::is_sorted(indexes.begin(), indexes.end())) {
    return fail(ErrorCode::kInternal, "chunk_ids: the chunk indexes are not sorted");
  }
  std::vector<std::optional<ChunkId>> out(indexes.size());
  if (indexes.empty()) return out;
  BLKVAULT_TRY_ASSIGN(auto gens, load_generations(generation));
  if (gens.empty()) return fail(ErrorCode::kNotFound, "generation " + std::to_string(generation) + " does not exist");
  const DeviceRecord* rec = gens.front().device(device);
  if (rec == nullptr || !rec->complete) {
    return fail(ErrorCode::kNotFound, "generation " + std::to_string(generation) + " holds no complete copy of " +
                                          std::string(device));
  }
  BLKVAULT_TRY_ASSIGN(int64_t dev, device_rowid(rec->name, false));
  // The same pass as device_image_locked, narrowed to the wanted range.
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare(
                                  "SELECT m.chunk_index, c.hash FROM chunk_map m JOIN chunks c ON c.id = m.chunk "
                                  "WHERE m.device = ? AND m.gen_to > ? AND m.gen_from <= ? "
                                  "AND m.chunk_index >= ? AND m.chunk_index <= ?"));
  q.bind(1, dev).bind(2, static_cast<int64_t>(generation)).bind(3, static_cast<int64_t>(generation));
  q.bind(4, static_cast<int64_t>(indexes.front())).bind(5, static_cast<int64_t>(indexes.back()));
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    const auto index = static_cast<uint64_t>(q.int64(0));
    auto it = std::lower_bound(indexes.begin(), indexes.end(), index);
    if (it != indexes.end() && *it == index) out[static_cast<size_t>(it - indexes.begin())] = to_chunk_id(q.blob(1));
  }
  return out;
}

Result<DeviceImage> Repository::Impl::device_image_locked(GenerationId generation, std::string_view device) {
  BLKVAULT_TRY_ASSIGN(auto gens, load_generations(generation));
  if (gens.empty()) {
    return fail(ErrorCode::kNotFound, "generation " + std::to_string(generation) + " does not exist");
  }
  const auto& g = gens.front();
  if (g.state != GenerationState::kComplete && g.state != GenerationState::kPartial) {
    return fail(ErrorCode::kNotFound, not_committed(generation, g.state));
  }
  const DeviceRecord* rec = g.device(device);
  if (rec == nullptr) {
    std::string names;
    for (const auto& d : g.devices) names += (names.empty() ? "" : ", ") + d.name;
    return fail(ErrorCode::kNotFound, "generation " + std::to_string(generation) + " has no device " +
                                          std::string(device) + " (it has: " + names + ")");
  }
  if (!rec->complete) {
    return fail(ErrorCode::kInvalidArgument, "device " + rec->name + " failed in generation " +
                                                 std::to_string(generation) + " (" + rec->error + "); nothing to restore");
  }
  BLKVAULT_TRY_ASSIGN(int64_t dev, device_rowid(rec->name, false));
  DeviceImage img;
  img.generation = generation;
  img.device = rec->name;
  img.size_bytes = rec->size_bytes;
  img.chunk_size = config.chunk_size;
  const uint64_t count = (rec->size_bytes + config.chunk_size - 1) / config.chunk_size;
  // Pack names are looked up once per pack afterwards, not joined into every row
  // (a second B-tree search per chunk).
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare(
                                  "SELECT m.chunk_index, c.hash, c.pack, c.offset, c.length, c.raw_size "
                                  "FROM chunk_map m JOIN chunks c ON c.id = m.chunk "
                                  "WHERE m.device = ? AND m.gen_to > ? AND m.gen_from <= ? AND m.chunk_index < ?"));
  q.bind(1, dev).bind(2, static_cast<int64_t>(generation)).bind(3, static_cast<int64_t>(generation));
  q.bind(4, static_cast<int64_t>(count));
  std::unordered_map<int64_t, uint32_t> pack_pos;
  std::vector<int64_t> pack_ids;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    ChunkRef r;
    r.chunk_index = static_cast<uint64_t>(q.int64(0));
    r.id = to_chunk_id(q.blob(1));
    if (q.is_null(2)) {
      return fail(ErrorCode::kCorrupt, "chunk " + to_hex(r.id) + " (offset " +
                                           std::to_string(r.chunk_index * config.chunk_size) + " of " + rec->name +
                                           " in generation " + std::to_string(generation) +
                                           ") is in no pack of the repository; run blkvault verify");
    }
    const int64_t pack = q.int64(2);
    auto [it, inserted] = pack_pos.try_emplace(pack, static_cast<uint32_t>(pack_ids.size()));
    if (inserted) pack_ids.push_back(pack);
    r.pack = it->second;
    r.offset = static_cast<uint64_t>(q.int64(3));
    r.length = static_cast<uint32_t>(q.int64(4));
    r.raw_size = static_cast<uint32_t>(q.int64(5));
    img.chunks.push_back(r);
  }
  BLKVAULT_TRY_ASSIGN(auto name_of, db->prepare("SELECT name FROM packs WHERE id = ?"));
  for (int64_t pack : pack_ids) {
    name_of.bind(1, pack);
    auto row = name_of.step();
    if (!row) {
      name_of.reset();
      return tl::unexpected(std::move(row).error());
    }
    // No such pack row: an empty name, as the outer join it replaces gave (the
    // read of such a chunk then fails and names it).
    img.packs.push_back(*row ? name_of.text(0) : std::string());
    name_of.reset();
  }
  auto by_index = [](const ChunkRef& a, const ChunkRef& b) { return a.chunk_index < b.chunk_index; };
  if (!std::is_sorted(img.chunks.begin(), img.chunks.end(), by_index)) {
    std::sort(img.chunks.begin(), img.chunks.end(), by_index);
  }
  return img;
}

// Brings the index up to date with the manifests: a manifest the index does
// not know is the work of a writer that died after publishing it.
Result<std::vector<GenerationId>> Repository::Impl::unindexed_manifests() {
  BLKVAULT_TRY_ASSIGN(auto names, storage->list("manifests/"));
  std::vector<GenerationId> on_disk;
  for (const auto& n : names) {
    if (auto id = parse_manifest_name(n)) on_disk.push_back(*id);
  }
  std::set<GenerationId> known;
  {
    BLKVAULT_TRY_ASSIGN(auto q, db->prepare(
                                    "SELECT id FROM generations WHERE state IN ('complete', 'partial', 'pruned')"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      known.insert(static_cast<GenerationId>(q.int64(0)));
    }
  }
  std::vector<GenerationId> missing;
  for (auto id : on_disk) {
    if (!known.count(id)) missing.push_back(id);
  }
  std::sort(missing.begin(), missing.end());
  return missing;
}

Result<std::vector<GenerationId>> Repository::Impl::pending_tombstones() {
  BLKVAULT_TRY_ASSIGN(auto names, storage->list("pruned/"));
  std::vector<GenerationId> out;
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT 1 FROM generations WHERE id = ? AND state = 'pruned'"));
  for (const auto& n : names) {
    auto id = parse_tombstone_name(n);
    if (!id) continue;
    q.bind(1, static_cast<int64_t>(*id));
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    q.reset();
    if (!row) out.push_back(*id);
  }
  return out;
}

Result<std::optional<std::string>> Repository::Impl::newer_gc_mark() {
  BLKVAULT_TRY_ASSIGN(auto marks, storage->list(kGcMarkDir));
  if (marks.empty()) return std::optional<std::string>();
  BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT value FROM meta WHERE key = 'gc_seen'"));
  BLKVAULT_TRY_ASSIGN(bool row, q.step());
  const std::string seen = row ? q.text(0) : std::string();
  if (marks.back() <= seen) return std::optional<std::string>();
  return std::optional<std::string>(marks.back());
}

Status Repository::Impl::note_gc_mark(const std::string& mark) {
  BLKVAULT_TRY_ASSIGN(auto st, db->prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('gc_seen', ?)"));
  return st.bind(1, mark).run();
}

Status Repository::Impl::load_condemned_packs() {
  BLKVAULT_TRY_ASSIGN(auto all, load_condemnations(*storage));
  condemned_packs.clear();
  for (const auto& c : all) {
    // gc deletes nothing under a damaged condemnation (it is void).
    if (c.damage) logger().warning(*c.damage + "; the next gc replaces it");
    condemned_packs.insert(c.packs.begin(), c.packs.end());
  }
  return {};
}

Result<std::string> Repository::Impl::condemned_pack_condition() {
  if (condemned_packs.empty()) return std::string();
  // In memory: the index's VFS (common/env.h) has no anonymous temporary
  // files. Set once per connection (setting it drops the temporary tables).
  BLKVAULT_TRY_ASSIGN(auto temp_store, db->query_int("PRAGMA temp_store"));
  if (temp_store.value_or(0) != 2) BLKVAULT_TRY(db->exec("PRAGMA temp_store = MEMORY"));
  BLKVAULT_TRY(db->exec("CREATE TEMP TABLE IF NOT EXISTS condemned_packs(name TEXT PRIMARY KEY)"));
  BLKVAULT_TRY(db->exec("DELETE FROM temp.condemned_packs"));
  BLKVAULT_TRY_ASSIGN(auto add, db->prepare("INSERT OR IGNORE INTO temp.condemned_packs(name) VALUES (?)"));
  for (const auto& name : condemned_packs) BLKVAULT_TRY(add.bind(1, name).run());
  return std::string("pack IN (SELECT p.id FROM packs p JOIN temp.condemned_packs c ON c.name = p.name)");
}

Status Repository::Impl::reconcile_packs(const std::string& mark) {
  logger().info("index: another host's gc changed the packs; bringing the index up to date");
  BLKVAULT_TRY_ASSIGN(auto names, storage->list("packs/"));
  const std::set<std::string> present(names.begin(), names.end());
  {
    // Removed generations whose manifests gc deleted: this index may never
    // have seen their tombstones (gc deletes those too).
    BLKVAULT_TRY_ASSIGN(auto manifests, storage->list("manifests/"));
    std::set<GenerationId> have;
    for (const auto& n : manifests) {
      if (auto id = parse_manifest_name(n)) have.insert(*id);
    }
    std::vector<int64_t> dropped;
    BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT id FROM generations WHERE state IN ('complete', 'partial', 'pruned')"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      if (!have.count(static_cast<GenerationId>(q.int64(0)))) dropped.push_back(q.int64(0));
    }
    q.reset();
    if (!dropped.empty()) {
      BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
      BLKVAULT_TRY_ASSIGN(auto mark_gone, db->prepare("UPDATE generations SET state = 'pruned' WHERE id = ?"));
      for (int64_t id : dropped) BLKVAULT_TRY(mark_gone.bind(1, id).run());
      BLKVAULT_TRY(db->exec("DELETE FROM chunk_map WHERE NOT " + std::string(kLiveRow)));
      BLKVAULT_TRY_ASSIGN(auto del_gen, db->prepare("DELETE FROM generations WHERE id = ?"));
      BLKVAULT_TRY_ASSIGN(auto del_dev, db->prepare("DELETE FROM generation_devices WHERE generation = ?"));
      for (int64_t id : dropped) {
        BLKVAULT_TRY(del_gen.bind(1, id).run());
        BLKVAULT_TRY(del_dev.bind(1, id).run());
      }
      BLKVAULT_TRY(tx.commit());
    }
  }
  {
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
    std::vector<int64_t> gone;
    {
      BLKVAULT_TRY_ASSIGN(auto q, db->prepare("SELECT id, name FROM packs"));
      for (;;) {
        BLKVAULT_TRY_ASSIGN(bool row, q.step());
        if (!row) break;
        if (!present.count(q.text(1))) gone.push_back(q.int64(0));
      }
    }
    // Their chunks are where gc moved them (learnt below), or nowhere.
    BLKVAULT_TRY_ASSIGN(auto unplace, db->prepare(
                                          "UPDATE chunks SET pack = NULL, offset = NULL, length = NULL WHERE pack = ?"));
    BLKVAULT_TRY_ASSIGN(auto drop, db->prepare("DELETE FROM packs WHERE id = ?"));
    for (int64_t id : gone) {
      BLKVAULT_TRY(unplace.bind(1, id).run());
      BLKVAULT_TRY(drop.bind(1, id).run());
    }
    BLKVAULT_TRY(db->exec("DELETE FROM chunks WHERE pack IS NULL AND id NOT IN (SELECT chunk FROM chunk_map)"));
    BLKVAULT_TRY(tx.commit());
  }
  BLKVAULT_TRY(learn_packs(names, {}));
  // A chunk of a deleted pack may live on in a pack this index already knew
  // (the copy another host stored at the same time, which gc kept): look for
  // it in every pack's trailer.
  BLKVAULT_TRY_ASSIGN(auto unplaced, db->query_int("SELECT count(*) FROM chunks WHERE pack IS NULL"));
  if (unplaced.value_or(0) > 0) {
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
    BLKVAULT_TRY_ASSIGN(auto place, db->prepare(
                                        "UPDATE chunks SET pack = ?, offset = ?, length = ? WHERE hash = ? AND pack IS NULL"));
    for (const auto& name : names) {
      if (name.find(".tmp-") != std::string::npos) continue;
      auto entries = read_pack_index(*storage, name);
      if (!entries) continue;  // learn_packs warned about it
      BLKVAULT_TRY_ASSIGN(auto size, storage->size(name));
      BLKVAULT_TRY_ASSIGN(int64_t pack, pack_rowid(name, size, true));
      for (const auto& e : *entries) {
        place.bind(1, pack).bind(2, static_cast<int64_t>(e.offset)).bind(3, int64_t{e.length});
        BLKVAULT_TRY(place.bind_blob(4, e.id).run());
      }
    }
    BLKVAULT_TRY(tx.commit());
  }
  return note_gc_mark(mark);
}

Status Repository::Impl::sync_index() {
  bool disorder = false;
  BLKVAULT_TRY(replay_manifests({}, &disorder));
  if (disorder) {
    // Generations of one device arrived out of order (two hosts committed in
    // the same instant): only a replay in id order gives the right maps.
    logger().warning("index: generations of one device arrived out of order; rebuilding the index from packs and manifests");
    db.reset();
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(index_path() + suffix, ec);
    BLKVAULT_TRY(open_index());
    BLKVAULT_TRY(replay_manifests({}, nullptr));
  }
  BLKVAULT_TRY_ASSIGN(auto mark, newer_gc_mark());
  if (mark) BLKVAULT_TRY(reconcile_packs(*mark));
  BLKVAULT_TRY_ASSIGN(auto tombs, pending_tombstones());
  if (tombs.empty()) return {};
  BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
  BLKVAULT_TRY_ASSIGN(auto mark_pruned, db->prepare(
                                     "UPDATE generations SET state = 'pruned' WHERE id = ? AND state IN ('complete', 'partial')"));
  for (auto id : tombs) BLKVAULT_TRY(mark_pruned.bind(1, static_cast<int64_t>(id)).run());
  return tx.commit();
}

Status Repository::Impl::learn_packs(const std::vector<std::string>& packs, const std::set<std::string>& skip) {
  // A chunk in a pack gc condemned moves to the new pack that holds it too
  // (gc rewrote the condemned one): the condemned pack may go while it is used.
  BLKVAULT_TRY_ASSIGN(const std::string condemned, condemned_pack_condition());
  BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
  BLKVAULT_TRY_ASSIGN(auto known_pack, db->prepare("SELECT 1 FROM packs WHERE name = ?"));
  BLKVAULT_TRY_ASSIGN(auto set_loc, db->prepare(
                                        "UPDATE chunks SET pack = ?, offset = ?, length = ?, raw_size = ? WHERE hash = ? "
                                        "AND (pack IS NULL" + (condemned.empty() ? std::string() : " OR " + condemned) + ")"));
  BLKVAULT_TRY_ASSIGN(auto add, db->prepare(
                                    "INSERT OR IGNORE INTO chunks(hash, pack, offset, length, raw_size) VALUES (?, ?, ?, ?, ?)"));
  for (const auto& name : packs) {
    if (name.find(".tmp-") != std::string::npos || skip.count(name)) continue;
    known_pack.bind(1, name);
    BLKVAULT_TRY_ASSIGN(bool is_known, known_pack.step());
    known_pack.reset();
    if (is_known) continue;
    auto entries = read_pack_index(*storage, name);
    if (!entries) {
      logger().warning("pack " + name + ": " + entries.error().message() + "; recovering its blobs by scanning");
      entries = scan_pack(*storage, name);
      if (!entries) {
        logger().warning("pack " + name + ": " + entries.error().message() + "; skipped");
        continue;
      }
    }
    BLKVAULT_TRY_ASSIGN(uint64_t size, storage->size(name));
    BLKVAULT_TRY_ASSIGN(int64_t pack, pack_rowid(name, size, true));
    for (const auto& e : *entries) {
      // The raw size is in the blob header; read it back.
      BLKVAULT_TRY_ASSIGN(auto head, storage->get_range(name, e.offset, BlobHeader::kSize));
      auto h = BlobHeader::decode(head, name + " at offset " + std::to_string(e.offset));
      if (!h) {
        logger().warning(h.error().message());
        continue;
      }
      set_loc.bind(1, pack).bind(2, static_cast<int64_t>(e.offset)).bind(3, int64_t{e.length});
      BLKVAULT_TRY(set_loc.bind(4, int64_t{h->raw_size}).bind_blob(5, e.id).run());
      add.bind_blob(1, e.id).bind(2, pack).bind(3, static_cast<int64_t>(e.offset)).bind(4, int64_t{e.length});
      BLKVAULT_TRY(add.bind(5, int64_t{h->raw_size}).run());
    }
  }
  return tx.commit();
}

Status Repository::Impl::replay_manifests(const std::set<std::string>& skip_packs, bool* disorder) {
  BLKVAULT_TRY_ASSIGN(auto missing, unindexed_manifests());
  if (missing.empty()) return {};
  logger().info("index: replaying " + std::to_string(missing.size()) + " generation(s) not yet indexed");

  // Packs the index does not know: learn their chunks from their trailers.
  BLKVAULT_TRY_ASSIGN(auto packs, storage->list("packs/"));
  // Packs repair moved aside (a copy under damaged/) are not the truth any
  // more, even when a killed repair left them in packs/ (docs/FORMAT.md).
  BLKVAULT_TRY_ASSIGN(auto moved_aside, storage->list("damaged/"));
  std::set<std::string> skip = skip_packs;
  for (const auto& name : moved_aside) skip.insert(name.substr(std::string_view("damaged/").size()));
  BLKVAULT_TRY(learn_packs(packs, skip));

  BLKVAULT_TRY_ASSIGN(auto newest_of, db->prepare(
                                          "SELECT max(gd.generation) FROM generation_devices gd JOIN generations g "
                                          "ON g.id = gd.generation WHERE gd.device = ? AND gd.complete = 1 "
                                          "AND g.state IN ('complete', 'partial', 'pruned')"));
  for (GenerationId id : missing) {
    const std::string name = manifest_name(id);
    BLKVAULT_TRY_ASSIGN(auto sealed, storage->get(name));
    auto bytes = open_metadata(name, std::move(sealed));
    if (!bytes) {
      logger().warning(bytes.error().message() + "; generation " + std::to_string(id) + " not indexed");
      continue;
    }
    auto m = Manifest::decode(*bytes, name);
    if (!m) {
      logger().warning(m.error().message() + "; generation " + std::to_string(id) + " not indexed");
      continue;
    }
    if (m->repository_id != config.id || m->chunk_size != config.chunk_size || m->generation.id != id) {
      logger().warning("manifest " + name + " does not belong to this repository; not indexed");
      continue;
    }
    // A device's generations must be applied in id order (each delta goes on
    // top of the device's latest map).
    bool late = false;
    for (size_t i = 0; i < m->generation.devices.size() && !late; ++i) {
      const auto& d = m->generation.devices[i];
      if (!d.complete) continue;
      BLKVAULT_TRY_ASSIGN(int64_t dev, device_rowid(d.name, true));
      newest_of.bind(1, dev);
      BLKVAULT_TRY(newest_of.step());
      late = !newest_of.is_null(0) && static_cast<GenerationId>(newest_of.int64(0)) > id;
      newest_of.reset();
    }
    if (late) {
      if (disorder != nullptr) {
        *disorder = true;
        return {};
      }
      // During a commit: left unindexed; the next open rebuilds the index.
      logger().warning("generation " + std::to_string(id) + " arrived after a later generation of one of its devices; "
                       "the next run rebuilds this index");
      continue;
    }
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*db));
    BLKVAULT_TRY(insert_generation(m->generation));
    BLKVAULT_TRY(db->exec("DELETE FROM generation_devices WHERE generation = " + std::to_string(id)));
    for (size_t i = 0; i < m->generation.devices.size(); ++i) {
      const auto& d = m->generation.devices[i];
      BLKVAULT_TRY(insert_device_record(id, d));
      if (!d.complete) continue;
      BLKVAULT_TRY_ASSIGN(int64_t dev, device_rowid(d.name, true));
      const uint64_t count = (d.size_bytes + config.chunk_size - 1) / config.chunk_size;
      BLKVAULT_TRY(apply_delta(dev, id, d.parent.has_value(), count, m->deltas[i]));
    }
    BLKVAULT_TRY(tx.commit());
  }
  return {};
}

// ---------------------------------------------------------------------------
// Repository.

Repository::Repository(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Repository::~Repository() = default;

Result<std::unique_ptr<Repository>> Repository::open(const std::string& path, const OpenOptions& options) {
  // Object storage keeps no index: each host caches it (below).
  const bool remote = is_remote_repository(path);
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->log = options.log;
  impl->env = options.env;
  if (remote) {
    BLKVAULT_TRY_ASSIGN(auto s3, S3Storage::open(path, options.upload_limiter));
    BLKVAULT_TRY_ASSIGN(bool has_config, s3->exists("config"));
    if (!has_config) {
      auto names = s3->list("");
      if ((!names && names.error().code() == ErrorCode::kNotFound) || (names && names->empty())) {
        return fail(ErrorCode::kNotFound, "repository " + path + " does not exist (create it with: blkvault init)");
      }
      if (!names) return fail(std::move(names.error()).wrap("opening repository " + path));
    }
    impl->storage = std::move(s3);
  } else {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) {
        return fail(ErrorCode::kNotFound, "repository " + path + " does not exist (create it with: blkvault init)");
      }
      return fail_errno("opening repository " + path);
    }
    if (!S_ISDIR(st.st_mode)) {
      return fail(ErrorCode::kInvalidArgument, path + " is not a blkvault repository (not a directory)");
    }
    BLKVAULT_TRY_ASSIGN(auto local, LocalStorage::open(path, options.env));
    impl->storage = std::move(local);
  }
  if (options.wrap_storage) impl->storage = options.wrap_storage(std::move(impl->storage));
  BLKVAULT_TRY_ASSIGN(impl->config, read_config(*impl->storage, path));
  impl->index_file = path + "/index.sqlite";
  if (impl->config.cipher != Cipher::kNone) BLKVAULT_TRY(impl->unlock(options));
  if (impl->config.cipher != Cipher::kNone || remote) {
    std::string cache = options.cache_dir;
    if (cache.empty()) {
      if (const char* env = std::getenv("BLKVAULT_CACHE_DIR"); env != nullptr && *env) {
        cache = env;
      } else if (::geteuid() == 0) {
        cache = "/var/cache/blkvault";
      } else {
        const char* home = std::getenv("HOME");
        cache = std::string(home != nullptr ? home : "/tmp") + "/.cache/blkvault";
      }
    }
    const std::string dir = cache + "/" + impl->config.id;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail(Error::from_errno("creating the index cache " + dir, ec.value()));
    ::chmod(dir.c_str(), 0700);
    impl->index_file = dir + "/index.sqlite";
  }

  // On object storage the writer lock is an object every host sees; this
  // host's cache of the index is guarded by a local lock in the cache dir.
  const std::string lock_dir = remote ? fs::path(impl->index_file).parent_path().string() : path;
  const bool name_host = impl->config.cipher == Cipher::kNone;
  if (options.write) {
    if (remote) {
      std::string broke;
      std::vector<std::string> broke_backups;
      const auto lock_options = ObjectLockOptions::from_environment();
      auto taken = options.shared
                       ? RepoLock::acquire_shared_object(*impl->storage, options.lock_wait_s, name_host, lock_options, &broke)
                       : RepoLock::acquire_object(*impl->storage, options.lock_wait_s, name_host, lock_options, &broke,
                                                  &broke_backups, options.backups_alongside);
      BLKVAULT_TRY_ASSIGN(auto lock, std::move(taken));
      if (!broke.empty()) impl->logger().warning("broke the stale repository lock of " + broke);
      for (const auto& b : broke_backups) impl->logger().warning("removed the stale backup marker of " + b);
      // Prune and gc's lock lets backups run: only forget() and gc() may use it.
      impl->exclusive = !options.shared && !options.backups_alongside;
      impl->maintenance = !options.shared;
      BLKVAULT_TRY_ASSIGN(auto cache_lock, RepoLock::acquire(lock_dir, options.lock_wait_s, name_host));
      lock.also_hold(std::move(cache_lock));
      impl->lock.emplace(std::move(lock));
    } else {
      // One SQLite index for every writer: they take turns (flock), backups included.
      BLKVAULT_TRY_ASSIGN(auto lock, RepoLock::acquire(path, options.lock_wait_s, name_host));
      impl->lock.emplace(std::move(lock));
      impl->exclusive = true;
      impl->maintenance = true;
    }
  }
  // A reader brings the index up to date only when it must (a manifest it
  // does not know, or no usable index) and no writer is active: taking the
  // lock for that moment must not make a starting backup fail.
  std::lock_guard guard(impl->mu);
  // After the backup marker is published (repo/condemned.h): gc's
  // condemnations from before it are seen here, later ones list this backup.
  if (options.write && !options.index_as_is) BLKVAULT_TRY(impl->load_condemned_packs());
  if (options.index_as_is) {
    impl->open_index_as_is();
    return std::unique_ptr<Repository>(new Repository(std::move(impl)));
  }
  bool created = false;
  auto opened = impl->open_index(&created);
  bool rebuild = !opened && opened.error().code() == ErrorCode::kCorrupt;
  if (!opened && !rebuild) return fail(std::move(opened.error()));
  bool behind = created;
  if (opened && !created) {
    BLKVAULT_TRY_ASSIGN(auto missing, impl->unindexed_manifests());
    BLKVAULT_TRY_ASSIGN(auto tombs, impl->pending_tombstones());
    BLKVAULT_TRY_ASSIGN(auto gc_mark, impl->newer_gc_mark());
    behind = !missing.empty() || !tombs.empty() || gc_mark.has_value();
  }
  std::optional<RepoLock> reader_lock;
  if ((behind || rebuild) && !options.write) {
    auto lock = RepoLock::acquire(lock_dir, 0, name_host);
    if (lock) {
      reader_lock.emplace(std::move(*lock));
    } else if (lock.error().code() != ErrorCode::kLocked) {
      return fail(std::move(lock.error()));
    } else if (created || rebuild) {
      return fail(ErrorCode::kLocked,
                  "the index of " + path + " is " + (created ? "missing" : "damaged (" + opened.error().message() + ")") +
                      " and another process holds the lock (" + lock.error().message() +
                      "); it will be rebuilt by the next writer: try again when it finishes");
    } else {
      impl->logger().info("the index lags the repository's manifests; the running writer will bring it up to date");
      behind = false;
    }
  }
  if (rebuild) {
    impl->logger().warning(opened.error().message() + "; rebuilding the index from packs and manifests");
    impl->db.reset();
    const std::string aside = impl->index_path() + ".damaged-" + std::to_string(now_ms());
    (void)impl->fs_env().rename(impl->index_path(), aside);
    (void)impl->fs_env().unlink(impl->index_path() + "-wal");
    (void)impl->fs_env().unlink(impl->index_path() + "-shm");
    BLKVAULT_TRY(impl->open_index());
    behind = true;
  }
  if (behind) BLKVAULT_TRY(impl->sync_index());
  if (options.write) {
    // A run that was in progress when its process died.
    BLKVAULT_TRY_ASSIGN(auto st2, impl->db->prepare(
                                      "UPDATE generations SET state = 'failed', error = 'interrupted: the backup process "
                                      "stopped before committing', finished_ms = ? WHERE state = 'in-progress'"));
    BLKVAULT_TRY(st2.bind(1, now_ms()).run());
  }
  return std::unique_ptr<Repository>(new Repository(std::move(impl)));
}

const RepoConfig& Repository::config() const { return impl_->config; }
std::shared_ptr<const Keys> Repository::keys() const { return impl_->keys; }
std::string Repository::index_path() const { return impl_->index_path(); }

Status Repository::Impl::unlock(const OpenOptions& options) {
  // The key files to try: the repository's (repokey) or the one given (keyfile).
  key_file = options.key_file;
  if (!options.paper_key.empty()) {
    BLKVAULT_TRY_ASSIGN(master, parse_paper_key(options.paper_key, config.id));
    BLKVAULT_TRY_ASSIGN(keys, Keys::derive(master->view(), config.cipher));
    config.chunk_key = keys->chunk_key();
    return {};
  }
  std::vector<std::pair<std::string, std::string>> candidates;  // where, text
  if (config.key_mode == "keyfile") {
    if (options.key_file.empty()) {
      return fail(ErrorCode::kKey, "repository " + path +
                                       " keeps its key in a key file outside it: give it with --key-file (or BLKVAULT_KEY_FILE)");
    }
    auto text = read_file(options.key_file);
    if (!text) return fail(ErrorCode::kKey, "reading key file " + options.key_file + ": " + text.error().message());
    candidates.emplace_back(options.key_file, *text);
  } else {
    BLKVAULT_TRY_ASSIGN(auto names, storage->list("keys/"));
    for (const auto& n : names) {
      BLKVAULT_TRY_ASSIGN(auto bytes, storage->get(n));
      candidates.emplace_back(n, std::string(bytes.begin(), bytes.end()));
    }
    if (candidates.empty()) {
      return fail(ErrorCode::kKey, "repository " + path + " has no key left in keys/ (restore access with blkvault key import)");
    }
  }
  if (!options.passphrase) {
    return fail(ErrorCode::kKey, "repository " + path +
                                     " is encrypted: give its passphrase (BLKVAULT_PASSWORD, --password-file or --password-command)");
  }
  BLKVAULT_TRY_ASSIGN(std::string pass, options.passphrase());
  for (const auto& [where, text] : candidates) {
    auto unwrapped = unwrap_master_key(text, pass, where);
    if (unwrapped) {
      master = std::move(*unwrapped);
      key_id = where;
      BLKVAULT_TRY_ASSIGN(keys, Keys::derive(master->view(), config.cipher));
      config.chunk_key = keys->chunk_key();
      return {};
    }
    if (unwrapped.error().code() != ErrorCode::kKey) logger().warning(unwrapped.error().message());
  }
  return fail(ErrorCode::kKey, "wrong passphrase for repository " + path +
                                   (candidates.size() > 1 ? " (none of its " + std::to_string(candidates.size()) + " keys opens with it)" : ""));
}

Result<std::vector<KeyInfo>> Repository::list_keys() {
  auto& impl = *impl_;
  if (!impl.keys) return fail(ErrorCode::kInvalidArgument, "repository " + impl.path + " is not encrypted");
  std::vector<KeyInfo> out;
  auto info = [&](const std::string& where, const std::string& text) {
    KeyInfo k;
    k.where = where;
    k.current = where == impl.key_id;
    try {
      const auto j = nlohmann::json::parse(text);
      k.id = j.at("id").get<std::string>();
      k.created = j.at("created").get<std::string>();
    } catch (const std::exception&) {
      k.id = "(unreadable)";
    }
    out.push_back(k);
  };
  if (impl.config.key_mode == "keyfile") {
    BLKVAULT_TRY_ASSIGN(auto text, read_file(impl.key_file));
    info(impl.key_file, text);
  } else {
    BLKVAULT_TRY_ASSIGN(auto names, impl.storage->list("keys/"));
    for (const auto& n : names) {
      BLKVAULT_TRY_ASSIGN(auto bytes, impl.storage->get(n));
      info(n, std::string(bytes.begin(), bytes.end()));
    }
  }
  return out;
}

Result<std::string> Repository::add_key(std::string_view passphrase, const KdfParams& kdf) {
  auto& impl = *impl_;
  if (!impl.keys) return fail(ErrorCode::kInvalidArgument, "repository " + impl.path + " is not encrypted");
  if (!impl.lock || !impl.exclusive) return fail(ErrorCode::kInternal, "add_key needs the repository opened for writing (not shared)");
  if (passphrase.empty()) return fail(ErrorCode::kInvalidArgument, "the new passphrase cannot be empty");
  const std::string id = random_hex(8);
  BLKVAULT_TRY_ASSIGN(auto text, wrap_master_key(*impl.master, passphrase, kdf, id, rfc3339_utc(now_ms())));
  if (impl.config.key_mode == "keyfile") {
    BLKVAULT_TRY(write_file_atomic(impl.key_file, text, 0600));
    impl.key_id = impl.key_file;
    return id;
  }
  BLKVAULT_TRY(impl.storage->put("keys/" + id, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  return id;
}

Status Repository::remove_key(std::string_view id) {
  auto& impl = *impl_;
  if (!impl.keys) return fail(ErrorCode::kInvalidArgument, "repository " + impl.path + " is not encrypted");
  if (!impl.lock || !impl.exclusive) return fail(ErrorCode::kInternal, "remove_key needs the repository opened for writing (not shared)");
  if (impl.config.key_mode == "keyfile") {
    return fail(ErrorCode::kInvalidArgument, "a keyfile repository has one key file; change its passphrase instead");
  }
  BLKVAULT_TRY_ASSIGN(auto keys, list_keys());
  const KeyInfo* found = nullptr;
  for (const auto& k : keys) {
    if (k.id == id) found = &k;
  }
  if (found == nullptr) return fail(ErrorCode::kNotFound, "no key " + std::string(id) + " in repository " + impl.path);
  if (found->current) {
    return fail(ErrorCode::kInvalidArgument,
                "key " + std::string(id) + " is the one this session opened the repository with; use another to remove it");
  }
  if (keys.size() == 1) return fail(ErrorCode::kInvalidArgument, "key " + std::string(id) + " is the last key");
  return impl.storage->remove(found->where);
}

std::string Repository::paper_key() const {
  if (!impl_->master) return {};
  return repo::paper_key(*impl_->master, impl_->config.id);
}

namespace {
constexpr uint32_t kSealedMagic = 0x4d455642;  // "BVEM"
}

Result<std::vector<uint8_t>> Repository::Impl::seal_metadata(const std::string& name, std::vector<uint8_t> bytes) const {
  if (!keys) return bytes;
  std::vector<uint8_t> out(8);
  put_le<uint32_t>(out.data(), kSealedMagic);
  out[4] = 1;
  out[5] = static_cast<uint8_t>(keys->cipher());
  std::vector<uint8_t> ad(out.begin(), out.end());
  ad.insert(ad.end(), name.begin(), name.end());
  BLKVAULT_TRY_ASSIGN(auto sealed, keys->seal(Keys::Use::kMetadata, bytes, ad));
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

Result<std::vector<uint8_t>> Repository::Impl::open_metadata(const std::string& name, std::vector<uint8_t> bytes) const {
  const bool sealed = bytes.size() >= 8 && get_le<uint32_t>(bytes.data()) == kSealedMagic;
  if (!keys) {
    if (sealed) return fail(ErrorCode::kCorrupt, name + ": encrypted, in a repository that is not");
    return bytes;
  }
  if (!sealed) {
    return fail(ErrorCode::kCorrupt, name + ": not encrypted, in an encrypted repository (tampered with)");
  }
  if (bytes[4] != 1 || bytes[5] != static_cast<uint8_t>(keys->cipher()) || bytes[6] != 0 || bytes[7] != 0) {
    return fail(ErrorCode::kCorrupt, name + ": unknown sealing header");
  }
  std::vector<uint8_t> ad(bytes.begin(), bytes.begin() + 8);
  ad.insert(ad.end(), name.begin(), name.end());
  return keys->open(Keys::Use::kMetadata, std::span(bytes).subspan(8), ad, name);
}
Storage& Repository::storage() { return *impl_->storage; }
const std::string& Repository::path() const { return impl_->path; }

Result<std::vector<GenerationInfo>> Repository::generations() {
  std::lock_guard guard(impl_->mu);
  return impl_->load_generations(std::nullopt);
}

Result<GenerationInfo> Repository::generation(GenerationId id) {
  std::lock_guard guard(impl_->mu);
  BLKVAULT_TRY_ASSIGN(auto gens, impl_->load_generations(id));
  if (gens.empty()) return fail(ErrorCode::kNotFound, "generation " + std::to_string(id) + " does not exist");
  return std::move(gens.front());
}

Result<GenerationId> Repository::resolve(std::string_view spec) {
  std::lock_guard guard(impl_->mu);
  if (spec == "latest") {
    BLKVAULT_TRY_ASSIGN(auto id, impl_->db->query_int(
                                     "SELECT max(id) FROM generations WHERE state IN ('complete', 'partial')"));
    if (!id) return fail(ErrorCode::kNotFound, "the repository has no generations yet");
    return static_cast<GenerationId>(*id);
  }
  GenerationId id = 0;
  auto [p, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), id);
  if (spec.empty() || ec != std::errc() || p != spec.data() + spec.size()) {
    return fail(ErrorCode::kInvalidArgument,
                "'" + std::string(spec) + "' is not a generation id (a number, or 'latest')");
  }
  BLKVAULT_TRY_ASSIGN(auto gens, impl_->load_generations(id));
  if (gens.empty()) return fail(ErrorCode::kNotFound, "generation " + std::to_string(id) + " does not exist");
  if (gens[0].state != GenerationState::kComplete && gens[0].state != GenerationState::kPartial) {
    return fail(ErrorCode::kNotFound, not_committed(id, gens[0].state));
  }
  return id;
}

Result<std::optional<LastGood>> Repository::last_good(std::string_view device) {
  std::lock_guard guard(impl_->mu);
  return impl_->last_good_locked(device);
}

Result<std::vector<std::optional<ChunkId>>> Repository::chunk_ids(GenerationId generation, std::string_view device,
                                                                  std::span<const uint64_t> indexes) {
  std::lock_guard g(impl_->mu);
  return impl_->chunk_ids_locked(generation, device, indexes);
}

Result<DeviceImage> Repository::device_image(GenerationId generation, std::string_view device) {
  std::lock_guard guard(impl_->mu);
  return impl_->device_image_locked(generation, device);
}

Result<RepoStats> Repository::stats() {
  std::lock_guard guard(impl_->mu);
  RepoStats s;
  BLKVAULT_TRY_ASSIGN(auto q, impl_->db->prepare("SELECT count(*), coalesce(sum(size), 0) FROM packs"));
  BLKVAULT_TRY(q.step());
  s.packs = static_cast<uint64_t>(q.int64(0));
  s.pack_bytes = static_cast<uint64_t>(q.int64(1));
  BLKVAULT_TRY_ASSIGN(auto c, impl_->db->prepare("SELECT count(*), coalesce(sum(raw_size), 0) FROM chunks WHERE pack IS NOT NULL"));
  BLKVAULT_TRY(c.step());
  s.chunks = static_cast<uint64_t>(c.int64(0));
  s.chunk_raw_bytes = static_cast<uint64_t>(c.int64(1));
  return s;
}

void Repository::Impl::remove_index_files() {
  for (const char* suffix : {"", "-wal", "-shm"}) (void)fs_env().unlink(index_path() + suffix);
}

Status Repository::rebuild_index() {
  if (!impl_->lock || !impl_->exclusive) return fail(ErrorCode::kInternal, "rebuild_index needs the repository opened for writing (not shared)");
  std::lock_guard guard(impl_->mu);
  impl_->db.reset();
  impl_->remove_index_files();
  BLKVAULT_TRY(impl_->open_index());
  impl_->index_problem.reset();
  return impl_->sync_index();
}

}  // namespace blkvault::repo
