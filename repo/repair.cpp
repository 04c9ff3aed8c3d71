// Repairs (repo/repair.h): the index diagnosed as it is, and the chunks no
// generation can read back (what they spoil, what the next backup re-reads).
// Moving damaged blobs aside is in repair_packs.cpp.
#include "repo/repair.h"
#include "repo/json_fields.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "repo/index_check.h"
#include "repo/repair_impl.h"

namespace blkvault::repo {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kIndexSchema = kIndexSchemaVersion;

}  // namespace

std::string_view to_string(IndexCheck::State state) {
  switch (state) {
    case IndexCheck::State::kOk: return "ok";
    case IndexCheck::State::kMissing: return "missing";
    case IndexCheck::State::kDamaged: return "damaged";
    case IndexCheck::State::kNewer: return "newer";
    case IndexCheck::State::kBehind: return "behind";
    case IndexCheck::State::kDisagrees: return "disagrees";
  }
  return "unknown";
}

std::string_view to_string(BadChunk::State state) {
  switch (state) {
    case BadChunk::State::kDamaged: return "damaged";
    case BadChunk::State::kMissing: return "missing";
    case BadChunk::State::kLost: return "lost";
  }
  return "unknown";
}

std::string damaged_copy_name(const std::string& pack) { return "damaged/" + pack; }
std::string damaged_record_name(const std::string& pack) { return "damaged/" + pack + ".json"; }

void Repository::Impl::open_index_as_is() {
  const std::string p = index_path();
  if (!fs::exists(p)) {
    index_problem = Error(ErrorCode::kNotFound, "index " + p + " is missing");
    return;
  }
  auto opened = sql::Db::open(p);
  if (!opened) {
    index_problem = std::move(opened).error();
    return;
  }
  db.emplace(std::move(*opened));
  auto usable = [&]() -> Status {
    BLKVAULT_TRY_ASSIGN(auto version, db->query_int("PRAGMA user_version"));
    if (version.value_or(0) > kIndexSchema) {
      index_problem_newer = true;
      return fail(ErrorCode::kUnsupported, "index " + p + " has schema version " + std::to_string(*version) +
                                               " (a newer blkvault's); this blkvault knows up to " +
                                               std::to_string(kIndexSchema));
    }
    if (version.value_or(0) != kIndexSchema) {
      return fail(ErrorCode::kCorrupt, "index " + p + " has schema version " + std::to_string(version.value_or(0)) +
                                           ", expected " + std::to_string(kIndexSchema));
    }
    BLKVAULT_TRY_ASSIGN(auto st, db->prepare("SELECT value FROM meta WHERE key = 'repository'"));
    BLKVAULT_TRY_ASSIGN(bool row, st.step());
    if (!row || st.text(0) != config.id) return fail(ErrorCode::kCorrupt, "index " + p + " belongs to another repository");
    BLKVAULT_TRY_ASSIGN(auto ic, db->prepare("PRAGMA integrity_check"));
    std::string bad;
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool more, ic.step());
      if (!more) break;
      if (ic.text(0) != "ok" && bad.empty()) bad = ic.text(0);
    }
    if (!bad.empty()) return fail(ErrorCode::kCorrupt, "index " + p + " fails SQLite's integrity check: " + bad);
    return {};
  }();
  if (!usable) {
    Error e = std::move(usable).error();
    // SQLite's own words for a file that is not a database name no file.
    if (e.message().find(p) == std::string::npos) e = Error(e.code(), "index " + p + " is damaged: " + e.message());
    index_problem = std::move(e);
    db.reset();
  }
}

Result<IndexCheck> Repository::check_index() {
  auto& impl = *impl_;
  std::lock_guard guard(impl.mu);
  IndexCheck out;
  out.path = impl.index_path();
  if (impl.index_problem) {
    out.state = impl.index_problem->code() == ErrorCode::kNotFound ? IndexCheck::State::kMissing
                : impl.index_problem_newer                         ? IndexCheck::State::kNewer
                                                                   : IndexCheck::State::kDamaged;
    out.findings.push_back(impl.index_problem->message());
    return out;
  }
  if (!impl.db) return fail(ErrorCode::kInternal, "check_index: no index is open");
  BLKVAULT_TRY_ASSIGN(auto missing, impl.unindexed_manifests());
  BLKVAULT_TRY_ASSIGN(auto tombs, impl.pending_tombstones());
  for (auto id : missing) {
    out.findings.push_back("generation " + std::to_string(id) + " (" + manifest_name(id) + ") is not in the index");
  }
  for (auto id : tombs) {
    out.findings.push_back("generation " + std::to_string(id) + " was removed by prune (" + tombstone_name(id) +
                           "), the index does not know it");
  }
  if (!out.findings.empty()) {
    out.state = IndexCheck::State::kBehind;
    return out;
  }
  BLKVAULT_TRY_ASSIGN(auto gens, impl.load_generations(std::nullopt));
  std::erase_if(gens, [](const GenerationInfo& g) {
    return g.state != GenerationState::kComplete && g.state != GenerationState::kPartial;
  });
  std::vector<std::string> problems;
  BLKVAULT_TRY(check_index_against_manifests(impl, gens, true, problems));
  for (auto& p : problems) out.findings.push_back(std::move(p));
  if (!out.findings.empty()) out.state = IndexCheck::State::kDisagrees;
  return out;
}

// ---------------------------------------------------------------------------
// What a chunk spoils.

Result<std::vector<Damage::Range>> affected_ranges(Repository::Impl& impl, int64_t chunk_rowid,
                                                   const std::vector<GenerationInfo>& gens,
                                                   std::optional<std::string_view> device) {
  std::vector<Damage::Range> out;
  BLKVAULT_TRY_ASSIGN(auto q, impl.db->prepare("SELECT dv.name, m.chunk_index, m.gen_from, m.gen_to FROM chunk_map m "
                                               "JOIN devices dv ON dv.id = m.device WHERE m.chunk = ?"));
  q.bind(1, chunk_rowid);
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    const std::string dev = q.text(0);
    if (device && dev != *device) continue;
    const auto idx = static_cast<uint64_t>(q.int64(1));
    const auto from = static_cast<uint64_t>(q.int64(2));
    const auto to = static_cast<uint64_t>(q.int64(3));
    for (const auto& g : gens) {
      if (g.id < from || g.id >= to) continue;
      if (g.state != GenerationState::kComplete && g.state != GenerationState::kPartial) continue;
      const DeviceRecord* rec = g.device(dev);
      if (rec == nullptr || !rec->complete) continue;
      const uint64_t off = idx * impl.config.chunk_size;
      if (off >= rec->size_bytes) continue;
      out.push_back(Damage::Range{g.id, dev, off, std::min(impl.config.chunk_size, rec->size_bytes - off)});
    }
  }
  std::sort(out.begin(), out.end(), [](const Damage::Range& a, const Damage::Range& b) {
    return std::tie(a.generation, a.device, a.offset_bytes) < std::tie(b.generation, b.device, b.offset_bytes);
  });
  return out;
}

Result<std::vector<std::pair<int64_t, ChunkId>>> referenced_missing_chunks(Repository::Impl& impl,
                                                                           std::optional<std::string_view> device) {
  // Every backup asks, and there is usually no chunk without a pack: the
  // chunks come first (chunks_by_pack finds the NULLs), and chunk_map is read
  // (once, into the IN list) only when one exists.
  std::string sql =
      "SELECT c.id, c.hash FROM chunks c WHERE c.pack IS NULL AND c.id IN (SELECT m.chunk FROM chunk_map m";
  if (device) sql += " JOIN devices dv ON dv.id = m.device WHERE dv.name = ?";
  BLKVAULT_TRY_ASSIGN(auto q, impl.db->prepare(sql + ") ORDER BY c.hash"));
  if (device) q.bind(1, *device);
  std::vector<std::pair<int64_t, ChunkId>> out;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    ChunkId id{};
    std::copy_n(q.blob(1).begin(), std::min<size_t>(id.size(), q.blob(1).size()), id.begin());
    out.emplace_back(q.int64(0), id);
  }
  return out;
}

Result<std::vector<MissingChunk>> Repository::missing_chunks(std::string_view device) {
  auto& impl = *impl_;
  std::lock_guard guard(impl.mu);
  BLKVAULT_TRY_ASSIGN(auto chunks, referenced_missing_chunks(impl, device));
  std::vector<MissingChunk> out;
  if (chunks.empty()) return out;
  BLKVAULT_TRY_ASSIGN(auto gens, impl.load_generations(std::nullopt));
  for (const auto& [rowid, id] : chunks) {
    BLKVAULT_TRY_ASSIGN(auto ranges, affected_ranges(impl, rowid, gens, device));
    if (ranges.empty()) continue;  // only removed generations read it: gc's
    out.push_back(MissingChunk{id, std::move(ranges)});
  }
  return out;
}

// ---------------------------------------------------------------------------
// Records of what repair moved aside (docs/FORMAT.md, "Damaged packs").

Result<std::map<std::string, int64_t>> read_repair_records(Storage& storage, std::vector<std::string>* packs_moved) {
  std::map<std::string, int64_t> since;  // chunk id hex -> earliest moved_ms
  BLKVAULT_TRY_ASSIGN(auto names, storage.list("damaged/"));
  for (const auto& n : names) {
    const bool record = n.size() >= 5 && n.compare(n.size() - 5, 5, ".json") == 0;
    if (!record && packs_moved != nullptr && n.rfind("damaged/packs/", 0) == 0) packs_moved->push_back(n.substr(8));
    if (!record) continue;
    BLKVAULT_TRY_ASSIGN(auto bytes, storage.get(n));
    try {
      const auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
      const int64_t ms = integer_field<int64_t>(j, "moved_ms");
      for (const auto& c : j.at("chunks")) {
        const auto hex = c.at("id").get<std::string>();
        auto [it, inserted] = since.emplace(hex, ms);
        if (!inserted) it->second = std::min(it->second, ms);
      }
    } catch (const std::exception&) {
      // A record is advice for the report, never needed to read data.
      continue;
    }
  }
  return since;
}

void classify_missing(BadChunk& bad, const std::vector<GenerationInfo>& gens) {
  bad.reread_by.clear();
  std::set<std::string> devices;
  for (const auto& r : bad.affected) devices.insert(r.device);
  if (bad.missing_since_ms == 0 || devices.empty()) {
    bad.state = BadChunk::State::kMissing;
    return;
  }
  for (const auto& dev : devices) {
    for (auto it = gens.rbegin(); it != gens.rend(); ++it) {
      if (it->state != GenerationState::kComplete && it->state != GenerationState::kPartial) continue;
      if (it->started_ms <= bad.missing_since_ms) break;
      const auto* d = it->device(dev);
      if (d != nullptr && d->complete) {
        bad.reread_by.emplace_back(dev, it->id);
        break;
      }
    }
  }
  bad.state = bad.reread_by.size() == devices.size() ? BadChunk::State::kLost : BadChunk::State::kMissing;
}

}  // namespace blkvault::repo
