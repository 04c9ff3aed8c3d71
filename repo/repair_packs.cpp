// repair packs (repo/repair.h): check every stored chunk, and with `apply`
// move the damaged blobs aside.
//
// Moving one pack P aside, in this order, and why a kill anywhere is safe:
//   1. its good blobs (each read and checked again) are copied unchanged into a
//      new pack N, published durably. Killed here or before: N is a leftover
//      nothing references (gc deletes it); P is still what the index reads.
//   2. P is copied to damaged/P (published atomically; an earlier run's copy
//      is kept), then the record damaged/P.json. Killed here: the index still
//      reads P, which is intact as far as its good blobs go; an index rebuild
//      from now on skips P (it has a copy under damaged/) and finds the good
//      blobs in N, so it forgets the damaged ones just as step 3 does.
//   3. one index transaction: N added, the good chunks moved to it, the damaged
//      chunks forgotten (no pack: the next backup stores them again), P dropped.
//   4. P is deleted. Killed before: P is a leftover the index does not read;
//      the rerun (or gc) deletes it, its copy stays under damaged/.
// Nothing is deleted that the index still reads, and the only copy of any
// byte is never deleted: damaged/ is left for an administrator.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "repo/pack.h"
#include "repo/parallel.h"
#include "repo/repair_impl.h"

namespace blkvault::repo {
namespace {

using nlohmann::json;

struct Stored {
  int64_t rowid = 0;
  ChunkId id{};
  int64_t pack = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint32_t raw_size = 0;
};

// The blob of `c` (header + stored bytes) when it checks out: header, id, the
// stored bytes' checksum (or AEAD tag), decompression, keyed hash, size.
// kCorrupt/kUnsupported: damage; any other error: the storage failed.
Result<std::vector<uint8_t>> checked_blob(Storage& storage, const std::string& pack, const Stored& c,
                                          const ChunkKey& key, ChunkCodec& codec) {
  const std::string where = pack + " at offset " + std::to_string(c.offset);
  const std::string chunk = where + ": chunk " + to_hex(c.id);
  if (c.length < BlobHeader::kSize) return fail(ErrorCode::kCorrupt, chunk + ": the index gives a bad length");
  BLKVAULT_TRY_ASSIGN(auto bytes, storage.get_range(pack, c.offset, c.length));
  BLKVAULT_TRY_ASSIGN(auto header, BlobHeader::decode(std::span(bytes).first(BlobHeader::kSize), where));
  if (header.id != c.id) return fail(ErrorCode::kCorrupt, chunk + ": the blob there is chunk " + to_hex(header.id));
  BLKVAULT_TRY_ASSIGN(auto data, codec.open(header, std::span(bytes).subspan(BlobHeader::kSize), key, where));
  if (data.size() != c.raw_size) {
    return fail(ErrorCode::kCorrupt, chunk + ": " + std::to_string(data.size()) + " bytes, the index says " +
                                         std::to_string(c.raw_size));
  }
  return bytes;
}

bool is_damage(const Error& e) { return e.code() == ErrorCode::kCorrupt || e.code() == ErrorCode::kUnsupported; }

// Copies `from` to `to` through the storage, 8 MiB at a time, published once whole.
Status copy_file(Storage& storage, const std::string& from, const std::string& to, uint64_t size) {
  BLKVAULT_TRY_ASSIGN(auto w, storage.create(to));
  constexpr uint64_t kPiece = 8 << 20;
  for (uint64_t at = 0; at < size; at += kPiece) {
    BLKVAULT_TRY_ASSIGN(auto piece, storage.get_range(from, at, std::min(kPiece, size - at)));
    BLKVAULT_TRY(w->append(piece));
  }
  return w->commit();
}

Status put_record(Storage& storage, const std::string& name, const std::optional<std::string>& pack, int64_t ms,
                  const std::vector<const BadChunk*>& chunks) {
  BLKVAULT_TRY_ASSIGN(bool have, storage.exists(name));
  if (have) return {};  // an earlier, killed run's: the first time is the one that counts
  json arr = json::array();
  for (const auto* b : chunks) {
    arr.push_back({{"id", to_hex(b->id)}, {"offset", b->offset}, {"why", b->what}});
  }
  json j = {{"blkvault_repair", 1}, {"pack", pack ? json(*pack) : json(nullptr)}, {"moved_ms", ms}, {"chunks", arr}};
  if (pack) j["copy"] = damaged_copy_name(*pack);
  const std::string text = j.dump(2) + "\n";
  return storage.put(name, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// One run of repair packs. Steps in the order run() calls them; each
// REQUIRES what run() did before it (impl.mu held where it locks).
class PackRepair {
 public:
  PackRepair(Repository::Impl& impl, const RepairPacksOptions& options, const CancelToken* cancel,
             const std::function<void(uint64_t)>& progress)
      : impl_(impl), options_(options), cancel_(cancel), progress_(progress) {}

  Result<RepairPacksReport> run() {
    BLKVAULT_TRY_ASSIGN(since_, read_repair_records(*impl_.storage, &copied_before_));
    {
      std::lock_guard guard(impl_.mu);
      BLKVAULT_TRY(load());
      if (options_.apply) BLKVAULT_TRY(finish_killed_run());
    }
    BLKVAULT_TRY(check());
    std::lock_guard guard(impl_.mu);
    BLKVAULT_TRY(list_bad());
    if (options_.apply) {
      now_ = now_ms();
      BLKVAULT_TRY(date_unrecorded());
      std::map<int64_t, std::vector<const Stored*>> bad, good;  // by pack
      for (const auto& c : stored_) (damaged_.count(c.rowid) ? bad : good)[c.pack].push_back(&c);
      for (const auto& [p, chunks] : bad) {
        if (cancel_ != nullptr && cancel_->cancelled()) return fail(ErrorCode::kCancelled, "repair packs interrupted");
        BLKVAULT_TRY(move_aside(p, chunks, good[p]));
      }
    }
    std::stable_sort(report_.bad.begin(), report_.bad.end(),
                     [](const BadChunk& a, const BadChunk& b) { return a.state < b.state; });
    return std::move(report_);
  }

 private:
  // The index's packs and stored chunks. REQUIRES: mu held.
  Status load() {
    auto& db = *impl_.db;
    BLKVAULT_TRY_ASSIGN(auto pq, db.prepare("SELECT id, name, size FROM packs"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, pq.step());
      if (!row) break;
      packs_[pq.int64(0)] = {pq.text(1), static_cast<uint64_t>(pq.int64(2))};
    }
    BLKVAULT_TRY_ASSIGN(auto q, db.prepare("SELECT id, hash, pack, offset, length, raw_size FROM chunks "
                                           "WHERE pack IS NOT NULL ORDER BY pack, offset"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      Stored c;
      c.rowid = q.int64(0);
      std::copy_n(q.blob(1).begin(), std::min<size_t>(16, q.blob(1).size()), c.id.begin());
      c.pack = q.int64(2);
      c.offset = static_cast<uint64_t>(q.int64(3));
      c.length = static_cast<uint32_t>(q.int64(4));
      c.raw_size = static_cast<uint32_t>(q.int64(5));
      stored_.push_back(c);
    }
    report_.chunks = stored_.size();
    return {};
  }

  // A killed run's work to finish: packs copied aside but still in packs/ (not
  // in the index: the transaction moved their chunks, or a rebuild skipped
  // them), and unpublished copies. REQUIRES: mu held, the writer lock.
  Status finish_killed_run() {
    std::set<std::string> indexed;
    for (const auto& [id, p] : packs_) indexed.insert(p.first);
    for (const auto& name : copied_before_) {
      if (indexed.count(name) || name.rfind("packs/", 0) != 0 || !check_name(name)) continue;
      BLKVAULT_TRY_ASSIGN(bool there, impl_.storage->exists(name));
      if (!there) continue;
      BLKVAULT_TRY(impl_.storage->remove(name));
      report_.leftovers_removed++;
    }
    BLKVAULT_TRY_ASSIGN(auto temps, impl_.storage->list_unpublished("damaged/"));
    for (const auto& t : temps) BLKVAULT_TRY(impl_.storage->remove(t));
    return {};
  }

  // Reads and checks every stored chunk on options_.threads threads. A pack
  // that is gone spoils all its chunks. Does not take mu.
  Status check() {
    std::set<int64_t> used;
    for (const auto& c : stored_) used.insert(c.pack);
    for (int64_t p : used) {
      ++report_.packs;
      auto size = impl_.storage->size(packs_.at(p).first);
      if (!size && size.error().code() == ErrorCode::kNotFound) {
        gone_.insert(p);
      } else if (!size) {
        return fail(std::move(size).error().wrap("repair packs"));
      }
    }
    CodecPool codecs(impl_);
    std::atomic<uint64_t> bytes_read{0};
    std::mutex mu;  // damaged_, progress_
    BLKVAULT_TRY(parallel_for(stored_.size(), options_.threads, cancel_, [&](size_t i, size_t) -> Status {
      const auto& c = stored_[i];
      const std::string& name = packs_.at(c.pack).first;
      if (gone_.count(c.pack)) {
        std::lock_guard g(mu);
        damaged_.emplace(c.rowid, "chunk " + to_hex(c.id) + ": pack " + name + " is gone");
        return {};
      }
      auto codec = codecs.take();
      auto blob = checked_blob(*impl_.storage, name, c, impl_.config.chunk_key, *codec);
      codecs.give(std::move(codec));
      if (!blob && !is_damage(blob.error())) return tl::unexpected(std::move(blob).error());
      bytes_read += c.length;
      std::lock_guard g(mu);
      if (!blob) damaged_.emplace(c.rowid, blob.error().message());
      if (progress_) progress_(c.length);
      return {};
    }, "repair packs interrupted"));
    report_.bytes_read = bytes_read.load();
    return {};
  }

  // report_.bad: the damaged chunks, then those no pack holds. REQUIRES: mu held.
  Status list_bad() {
    BLKVAULT_TRY_ASSIGN(gens_, impl_.load_generations(std::nullopt));
    for (const auto& c : stored_) {
      auto it = damaged_.find(c.rowid);
      if (it != damaged_.end()) BLKVAULT_TRY(add_damaged(c, it->second));
    }
    BLKVAULT_TRY_ASSIGN(auto missing, referenced_missing_chunks(impl_, std::nullopt));
    for (const auto& [rowid, id] : missing) {
      BadChunk b;
      b.id = id;
      b.what = "chunk " + to_hex(id) + " is in no pack";
      BLKVAULT_TRY_ASSIGN(b.affected, affected_ranges(impl_, rowid, gens_, std::nullopt));
      if (b.affected.empty()) continue;  // only removed generations read it: gc drops it
      auto s = since_.find(to_hex(id));
      if (s != since_.end()) {
        b.missing_since_ms = s->second;
      } else {
        unrecorded_.push_back(report_.bad.size());
      }
      classify_missing(b, gens_);
      report_.bad.push_back(std::move(b));
    }
    return {};
  }

  Status add_damaged(const Stored& c, const std::string& why) {
    BadChunk b;
    b.state = BadChunk::State::kDamaged;
    b.id = c.id;
    b.pack = packs_.at(c.pack).first;
    b.offset = c.offset;
    b.what = why;
    BLKVAULT_TRY_ASSIGN(b.affected, affected_ranges(impl_, c.rowid, gens_, std::nullopt));
    bad_of_[c.rowid] = report_.bad.size();
    report_.bad.push_back(std::move(b));
    return {};
  }

  // Missing chunks no record dates are dated now, so that the report after the
  // next backup can tell which stayed lost.
  Status date_unrecorded() {
    if (unrecorded_.empty()) return {};
    std::vector<const BadChunk*> list;
    for (size_t i : unrecorded_) list.push_back(&report_.bad[i]);
    BLKVAULT_TRY(put_record(*impl_.storage, numbered_name("damaged/missing/", static_cast<uint64_t>(now_)) + ".json",
                            std::nullopt, now_, list));
    for (size_t i : unrecorded_) report_.bad[i].missing_since_ms = now_;
    return {};
  }

  // Steps 1-4 of the file comment for pack `p`. REQUIRES: mu held, the writer lock.
  Status move_aside(int64_t p, const std::vector<const Stored*>& bad, const std::vector<const Stored*>& good) {
    const auto& [name, size] = packs_.at(p);
    std::vector<const Stored*> removed(bad.begin(), bad.end());
    std::vector<std::pair<const Stored*, PackEntry>> kept;
    std::string new_name;
    std::unique_ptr<PackWriter> writer;
    MovedPack moved;
    moved.pack = name;
    if (!gone_.count(p)) {
      // 1. The good blobs into a new pack, checked again as they are copied.
      auto codec = impl_.make_codec();
      for (const Stored* c : good) {
        auto blob = checked_blob(*impl_.storage, name, *c, impl_.config.chunk_key, *codec);
        if (!blob && !is_damage(blob.error())) return tl::unexpected(std::move(blob).error());
        if (!blob) {  // damaged since the check: never copy damage
          removed.push_back(c);
          BLKVAULT_TRY(add_damaged(*c, blob.error().message()));
          continue;
        }
        if (!writer) {
          const std::string hex = random_hex(16);
          new_name = "packs/" + hex.substr(0, 2) + "/" + hex;
          BLKVAULT_TRY_ASSIGN(writer, PackWriter::create(*impl_.storage, new_name));
        }
        BLKVAULT_TRY_ASSIGN(auto e, writer->append(c->id, *blob));
        kept.emplace_back(c, e);
      }
      if (writer) BLKVAULT_TRY(writer->finish());
      // 2. The damaged pack kept for inspection.
      BLKVAULT_TRY_ASSIGN(bool copied, impl_.storage->exists(damaged_copy_name(name)));
      if (!copied) BLKVAULT_TRY(copy_file(*impl_.storage, name, damaged_copy_name(name), size));
      moved.copy = damaged_copy_name(name);
    }
    std::vector<const BadChunk*> record;
    for (const Stored* c : removed) record.push_back(&report_.bad[bad_of_.at(c->rowid)]);
    BLKVAULT_TRY(put_record(*impl_.storage, damaged_record_name(name), name, now_, record));
    // 3. The index: good chunks to the new pack, damaged ones forgotten.
    {
      BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*impl_.db));
      if (writer) {
        BLKVAULT_TRY_ASSIGN(int64_t new_id, impl_.pack_rowid(new_name, writer->size(), true));
        BLKVAULT_TRY_ASSIGN(auto mv, impl_.db->prepare("UPDATE chunks SET pack = ?, offset = ? WHERE id = ?"));
        for (const auto& [c, e] : kept) {
          BLKVAULT_TRY(mv.bind(1, new_id).bind(2, static_cast<int64_t>(e.offset)).bind(3, c->rowid).run());
        }
      }
      BLKVAULT_TRY_ASSIGN(auto forget, impl_.db->prepare("UPDATE chunks SET pack = NULL, offset = NULL, length = NULL, "
                                                         "raw_size = NULL WHERE pack = ?"));
      BLKVAULT_TRY(forget.bind(1, p).run());
      BLKVAULT_TRY_ASSIGN(auto dp, impl_.db->prepare("DELETE FROM packs WHERE id = ?"));
      BLKVAULT_TRY(dp.bind(1, p).run());
      BLKVAULT_TRY(tx.commit());
    }
    // 4. The damaged pack leaves packs/ (its copy stays under damaged/).
    if (!gone_.count(p)) BLKVAULT_TRY(impl_.storage->remove(name));
    moved.replacement = writer ? new_name : "";
    moved.chunks_removed = removed.size();
    moved.chunks_kept = kept.size();
    report_.moved.push_back(std::move(moved));
    for (const Stored* c : removed) {
      auto& b = report_.bad[bad_of_.at(c->rowid)];
      b.what = "chunk " + to_hex(b.id) + " is in no pack (moved aside from " + name + ")";
      b.missing_since_ms = now_;
      classify_missing(b, gens_);
    }
    return {};
  }

  Repository::Impl& impl_;
  const RepairPacksOptions& options_;
  const CancelToken* cancel_;
  const std::function<void(uint64_t)>& progress_;

  RepairPacksReport report_;
  std::map<std::string, int64_t> since_;              // chunk hex -> moved aside at (records)
  std::vector<std::string> copied_before_;            // packs with a copy under damaged/
  std::map<int64_t, std::pair<std::string, uint64_t>> packs_;  // rowid -> name, size
  std::vector<Stored> stored_;                        // every chunk in a pack, by pack and offset
  std::map<int64_t, std::string> damaged_;            // chunk rowid -> why
  std::set<int64_t> gone_;                            // packs whose file is gone
  std::vector<GenerationInfo> gens_;
  std::unordered_map<int64_t, size_t> bad_of_;        // damaged chunk rowid -> index in report_.bad
  std::vector<size_t> unrecorded_;                    // missing chunks no record dates (indexes in report_.bad)
  int64_t now_ = 0;
};

}  // namespace

Result<RepairPacksReport> Repository::repair_packs(const RepairPacksOptions& options, const CancelToken* cancel,
                                                   const std::function<void(uint64_t)>& progress) {
  if (options.apply && !impl_->lock) return fail(ErrorCode::kInternal, "repair packs --apply needs the writer lock");
  return PackRepair(*impl_, options, cancel, progress).run();
}

}  // namespace blkvault::repo
