// Removing generations (forget) and reclaiming space (gc).
//
// gc's order of work, and why a kill at any point loses nothing referenced:
//   1. one index transaction drops what no remaining generation can reach: the
//      chunk-map rows of removed generations and the index rows of removed
//      generations whose manifest nothing needs any more;
//   2. unneeded manifests, then their tombstones, are deleted (a manifest that
//      survives a crash here is replayed and re-pruned from its tombstone);
//   3. packs with nothing live: their index rows go in one transaction, then
//      the files;
//   4. packs mostly garbage: live blobs are checked and copied into a new pack
//      that is published durably, then one transaction moves the chunks to it,
//      then the old file is deleted;
//   5. leftovers: packs the index does not know (an interrupted backup's it did
//      not record, another host's, or a step 3/4 file a crash kept) and temp
//      files of interrupted writes.
// Leftovers are deleted before step 4 (they are garbage from the start), so a
// nearly full filesystem has their space for the rewrite. When the filesystem
// is full all the same, step 4 stops with a warning and no error: everything
// gc could delete is deleted, and the packs not rewritten stay intact.
// Files are only deleted after the index stops referencing them, and a file the
// index does not reference is only ever garbage while the writer lock is held.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "repo/pack.h"
#include "repo/repository_impl.h"
#include "repo/s3_storage.h"

namespace blkvault::repo {

std::string tombstone_name(GenerationId id) { return numbered_name("pruned/", id); }
std::optional<GenerationId> parse_tombstone_name(std::string_view name) { return parse_numbered_name("pruned/", name); }

Status Repository::forget(const std::vector<GenerationId>& ids) {
  if (!impl_->lock || !impl_->exclusive) return fail(ErrorCode::kInternal, "forget needs the repository opened for writing (not shared)");
  std::lock_guard guard(impl_->mu);
  for (GenerationId id : ids) {
    BLKVAULT_TRY_ASSIGN(auto gens, impl_->load_generations(id));
    if (gens.empty()) return fail(ErrorCode::kNotFound, "generation " + std::to_string(id) + " does not exist");
    if (gens[0].state != GenerationState::kComplete && gens[0].state != GenerationState::kPartial) {
      return fail(ErrorCode::kInvalidArgument, "generation " + std::to_string(id) + " is " +
                                                   std::string(to_string(gens[0].state)) + ", not a committed backup");
    }
  }
  BLKVAULT_TRY_ASSIGN(auto existing, impl_->storage->list("pruned/"));
  const std::set<std::string> have(existing.begin(), existing.end());
  BLKVAULT_TRY_ASSIGN(auto mark, impl_->db->prepare("UPDATE generations SET state = 'pruned' WHERE id = ?"));
  for (GenerationId id : ids) {
    // The tombstone first: it is what survives an index rebuild.
    const std::string name = tombstone_name(id);
    if (!have.count(name)) {
      const std::string body = "{\"generation\": " + std::to_string(id) + ", \"pruned_ms\": " +
                                std::to_string(now_ms()) + "}\n";
      BLKVAULT_TRY(impl_->storage->put(name, std::span(reinterpret_cast<const uint8_t*>(body.data()), body.size())));
    }
    BLKVAULT_TRY(mark.bind(1, static_cast<int64_t>(id)).run());
  }
  return {};
}

namespace {

// "gc/<20-digit unix ms>", later than every mark in `existing` (the names
// sort as numbers), noted in this index as seen.
Status publish_gc_mark(Repository::Impl& impl, std::vector<std::string>& existing) {
  int64_t ms = now_ms();
  std::string name = numbered_name(kGcMarkDir, static_cast<uint64_t>(ms));
  while (!existing.empty() && name <= existing.back()) name = numbered_name(kGcMarkDir, static_cast<uint64_t>(++ms));
  BLKVAULT_TRY(impl.storage->put(name, {}));
  existing.push_back(name);
  return impl.note_gc_mark(name);
}

struct PackRow {
  int64_t id;
  std::string name;
  uint64_t size;
  uint64_t live_bytes = 0;
  uint64_t live_chunks = 0;
};

}  // namespace

Result<GcReport> Repository::gc(const GcOptions& options, const CancelToken* cancel) {
  if (!impl_->lock || !impl_->exclusive) return fail(ErrorCode::kInternal, "gc needs the repository opened for writing (not shared)");
  auto& impl = *impl_;
  std::lock_guard guard(impl.mu);
  auto& db = *impl.db;
  GcReport report;

  // A manifest the index could not read may reference packs it does not know:
  // deleting "unreferenced" data would then destroy that generation for good.
  BLKVAULT_TRY_ASSIGN(auto unread, impl.unindexed_manifests());
  if (!unread.empty()) {
    return fail(ErrorCode::kCorrupt, "manifest " + manifest_name(unread.front()) +
                                         " cannot be read into the index (see blkvault verify); gc would delete "
                                         "data it may reference, so it stops here");
  }

  // Which generations' manifests are still needed: every remaining generation,
  // and each ancestor its devices' deltas are stored against.
  std::map<GenerationId, GenerationState> states;
  std::map<std::pair<GenerationId, int64_t>, std::optional<GenerationId>> parent;  // (gen, device) -> parent
  {
    BLKVAULT_TRY_ASSIGN(auto q, db.prepare("SELECT id, state FROM generations"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      const std::string s = q.text(1);
      states[static_cast<GenerationId>(q.int64(0))] =
          s == "complete" ? GenerationState::kComplete
          : s == "partial" ? GenerationState::kPartial
          : s == "pruned"  ? GenerationState::kPruned
          : s == "failed"  ? GenerationState::kFailed
                           : GenerationState::kInProgress;
    }
    BLKVAULT_TRY_ASSIGN(auto p, db.prepare("SELECT generation, device, parent FROM generation_devices WHERE complete = 1"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, p.step());
      if (!row) break;
      std::optional<GenerationId> par;
      if (!p.is_null(2)) par = static_cast<GenerationId>(p.int64(2));
      parent[{static_cast<GenerationId>(p.int64(0)), p.int64(1)}] = par;
    }
  }
  std::set<GenerationId> needed;
  std::set<std::pair<GenerationId, int64_t>> walked;
  for (const auto& [key, par] : parent) {
    const auto st = states[key.first];
    if (st != GenerationState::kComplete && st != GenerationState::kPartial) continue;
    needed.insert(key.first);
    // Walk this device's chain of parents down to its first full image.
    for (auto cur = par; cur && walked.insert({*cur, key.second}).second;) {
      needed.insert(*cur);
      auto it = parent.find({*cur, key.second});
      cur = it == parent.end() ? std::nullopt : it->second;
    }
  }
  std::vector<GenerationId> drop_manifests;
  for (const auto& [id, st] : states) {
    if (st == GenerationState::kPruned && !needed.count(id)) drop_manifests.push_back(id);
  }

  // Step 1 (and the plan for the rest), in one transaction.
  std::vector<PackRow> packs;
  {
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(db));
    BLKVAULT_TRY(db.exec("DELETE FROM chunk_map WHERE NOT " + std::string(kLiveRow)));
    BLKVAULT_TRY(db.exec("DELETE FROM chunks WHERE pack IS NULL AND id NOT IN (SELECT chunk FROM chunk_map)"));
    BLKVAULT_TRY_ASSIGN(auto del_gen, db.prepare("DELETE FROM generations WHERE id = ?"));
    BLKVAULT_TRY_ASSIGN(auto del_dev, db.prepare("DELETE FROM generation_devices WHERE generation = ?"));
    for (auto id : drop_manifests) {
      BLKVAULT_TRY(del_gen.bind(1, static_cast<int64_t>(id)).run());
      BLKVAULT_TRY(del_dev.bind(1, static_cast<int64_t>(id)).run());
    }
    BLKVAULT_TRY_ASSIGN(auto q, db.prepare(
                                    "SELECT p.id, p.name, p.size, "
                                    "coalesce(sum(CASE WHEN l.chunk IS NOT NULL THEN c.length END), 0), count(l.chunk) "
                                    "FROM packs p LEFT JOIN chunks c ON c.pack = p.id "
                                    "LEFT JOIN (SELECT DISTINCT chunk FROM chunk_map) l ON l.chunk = c.id "
                                    "GROUP BY p.id ORDER BY p.id"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      PackRow p{q.int64(0), q.text(1), static_cast<uint64_t>(q.int64(2))};
      p.live_bytes = static_cast<uint64_t>(q.int64(3));
      p.live_chunks = static_cast<uint64_t>(q.int64(4));
      report.packs_before++;
      report.bytes_before += p.size;
      packs.push_back(std::move(p));
    }
    q.reset();
    if (!options.dry_run) BLKVAULT_TRY(tx.commit());
  }

  // Leftovers the index does not reference.
  std::set<std::string> indexed_packs;
  for (const auto& p : packs) indexed_packs.insert(p.name);
  std::vector<std::string> leftovers;
  for (const char* dir : {"packs/", "manifests/", "pruned/"}) {
    BLKVAULT_TRY_ASSIGN(auto names, impl.storage->list(dir));
    for (const auto& n : names) {
      if (std::string_view(dir) == "packs/" && !indexed_packs.count(n)) leftovers.push_back(n);
    }
    BLKVAULT_TRY_ASSIGN(auto temps, impl.storage->list_unpublished(dir));
    leftovers.insert(leftovers.end(), temps.begin(), temps.end());
  }
  // Tombstones whose manifest is gone.
  {
    BLKVAULT_TRY_ASSIGN(auto tombs, impl.storage->list("pruned/"));
    BLKVAULT_TRY_ASSIGN(auto mans, impl.storage->list("manifests/"));
    const std::set<std::string> have(mans.begin(), mans.end());
    for (const auto& t : tombs) {
      auto id = parse_tombstone_name(t);
      if (id && !have.count(manifest_name(*id))) leftovers.push_back(t);
    }
  }

  std::vector<const PackRow*> empty, sparse;
  for (const auto& p : packs) {
    if (p.live_chunks == 0) {
      empty.push_back(&p);
    } else if (static_cast<double>(p.live_bytes) < options.repack_below * static_cast<double>(p.size)) {
      sparse.push_back(&p);
    }
  }

  if (options.dry_run) {
    report.manifests_deleted = drop_manifests.size();
    report.packs_deleted = empty.size();
    report.packs_rewritten = sparse.size();
    report.leftovers_deleted = leftovers.size();
    uint64_t after = report.bytes_before;
    for (const auto* p : empty) after -= p->size;
    for (const auto* p : sparse) after -= p->size - p->live_bytes;
    report.bytes_after = after;
    report.packs_after = report.packs_before - empty.size();
    return report;
  }

  BLKVAULT_TRY_ASSIGN(auto chunks_before, db.query_int("SELECT count(*) FROM chunks"));

  // Other hosts' index caches still point at the packs deleted or rewritten
  // below: a mark, published before the first of them goes, tells their next
  // open to bring their packs up to date (Impl::reconcile_packs).
  BLKVAULT_TRY_ASSIGN(auto old_marks, impl.storage->list(kGcMarkDir));
  if (!empty.empty() || !sparse.empty() || !leftovers.empty()) {
    BLKVAULT_TRY(publish_gc_mark(impl, old_marks));
  }

  // Step 2: manifests nothing needs, then their tombstones.
  for (auto id : drop_manifests) {
    BLKVAULT_TRY(impl.storage->remove(manifest_name(id)));
    BLKVAULT_TRY(impl.storage->remove(tombstone_name(id)));
    report.manifests_deleted++;
  }

  // Step 3: packs with nothing live.
  if (!empty.empty()) {
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(db));
    BLKVAULT_TRY_ASSIGN(auto dc, db.prepare("DELETE FROM chunks WHERE pack = ?"));
    BLKVAULT_TRY_ASSIGN(auto dp, db.prepare("DELETE FROM packs WHERE id = ?"));
    for (const auto* p : empty) {
      BLKVAULT_TRY(dc.bind(1, p->id).run());
      BLKVAULT_TRY(dp.bind(1, p->id).run());
    }
    BLKVAULT_TRY(tx.commit());
    for (const auto* p : empty) {
      BLKVAULT_TRY(impl.storage->remove(p->name));
      report.packs_deleted++;
    }
  }

  // Step 5 first: leftovers are garbage already, and their space may be what
  // step 4 needs on a nearly full filesystem.
  for (const auto& n : leftovers) {
    BLKVAULT_TRY(impl.storage->remove(n));
    report.leftovers_deleted++;
  }
  // On object storage an interrupted write is an unfinished multipart upload;
  // under the lock no other writer can have one in flight.
  if (auto* s3 = dynamic_cast<S3Storage*>(impl.storage.get())) {
    BLKVAULT_TRY_ASSIGN(uint64_t aborted, s3->abort_stale_uploads());
    report.leftovers_deleted += aborted;
  }

  // Step 4: rewrite packs that are mostly garbage. Out of space, it stops:
  // the unpublished new pack is discarded and the old one stays referenced.
  auto out_of_space = [&](const PackRow& p, const Error& e) {
    report.warnings.push_back("not rewriting pack " + p.name + " (" + std::to_string(p.size - p.live_bytes) +
                              " bytes of garbage) nor any after it: " + e.message() +
                              "; free some space and run gc again");
  };
  auto codec_ptr = impl.make_codec();
  ChunkCodec& codec = *codec_ptr;
  for (const auto* p : sparse) {
    if (cancel != nullptr && cancel->cancelled()) return fail(ErrorCode::kCancelled, "gc interrupted");
    struct Live {
      int64_t rowid;
      ChunkId id;
      uint64_t offset;
      uint32_t length;
    };
    std::vector<Live> live;
    {
      BLKVAULT_TRY_ASSIGN(auto q, db.prepare(
                                      "SELECT c.id, c.hash, c.offset, c.length FROM chunks c WHERE c.pack = ? AND "
                                      "c.id IN (SELECT chunk FROM chunk_map) ORDER BY c.offset"));
      q.bind(1, p->id);
      for (;;) {
        BLKVAULT_TRY_ASSIGN(bool row, q.step());
        if (!row) break;
        Live l{q.int64(0), {}, static_cast<uint64_t>(q.int64(2)), static_cast<uint32_t>(q.int64(3))};
        std::copy_n(q.blob(1).begin(), std::min<size_t>(16, q.blob(1).size()), l.id.begin());
        live.push_back(l);
      }
    }
    const std::string hex = random_hex(16);
    const std::string new_name = "packs/" + hex.substr(0, 2) + "/" + hex;
    auto created = PackWriter::create(*impl.storage, new_name);
    if (!created && created.error().code() == ErrorCode::kNoSpace) {
      out_of_space(*p, created.error());
      break;
    }
    BLKVAULT_TRY_ASSIGN(auto writer, std::move(created));
    std::vector<std::pair<int64_t, PackEntry>> moved;
    bool damaged = false;
    bool full = false;
    for (const auto& l : live) {
      BLKVAULT_TRY_ASSIGN(auto bytes, impl.storage->get_range(p->name, l.offset, l.length));
      const std::string where = p->name + " at offset " + std::to_string(l.offset);
      auto header = BlobHeader::decode(std::span(bytes).first(std::min<size_t>(bytes.size(), BlobHeader::kSize)), where);
      Status ok;
      if (!header) {
        ok = tl::unexpected(std::move(header).error());
      } else {
        auto data = codec.open(*header, std::span(bytes).subspan(BlobHeader::kSize), impl.config.chunk_key, where);
        if (!data) ok = tl::unexpected(std::move(data).error());
      }
      if (!ok) {
        // Never copy damage into a fresh pack that verify would then trust.
        report.warnings.push_back("not rewriting pack " + p->name + ": " + ok.error().message());
        damaged = true;
        break;
      }
      auto e = writer->append(l.id, bytes);
      if (!e && e.error().code() == ErrorCode::kNoSpace) {
        out_of_space(*p, e.error());
        full = true;
        break;
      }
      if (!e) return tl::unexpected(std::move(e).error());
      moved.emplace_back(l.rowid, *e);
    }
    if (full) break;        // the unpublished new pack is discarded with `writer`
    if (damaged) continue;  // likewise
    if (auto fin = writer->finish(); !fin) {
      if (fin.error().code() != ErrorCode::kNoSpace) return tl::unexpected(std::move(fin).error());
      out_of_space(*p, fin.error());
      break;
    }
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(db));
    BLKVAULT_TRY_ASSIGN(int64_t new_id, impl.pack_rowid(new_name, writer->size(), true));
    BLKVAULT_TRY_ASSIGN(auto mv, db.prepare("UPDATE chunks SET pack = ?, offset = ? WHERE id = ?"));
    for (const auto& [rowid, e] : moved) {
      BLKVAULT_TRY(mv.bind(1, new_id).bind(2, static_cast<int64_t>(e.offset)).bind(3, rowid).run());
    }
    BLKVAULT_TRY_ASSIGN(auto dc, db.prepare("DELETE FROM chunks WHERE pack = ?"));
    BLKVAULT_TRY(dc.bind(1, p->id).run());
    BLKVAULT_TRY_ASSIGN(auto dp, db.prepare("DELETE FROM packs WHERE id = ?"));
    BLKVAULT_TRY(dp.bind(1, p->id).run());
    BLKVAULT_TRY(tx.commit());
    BLKVAULT_TRY(impl.storage->remove(p->name));
    report.packs_rewritten++;
  }

  if (report.packs_deleted + report.packs_rewritten + report.leftovers_deleted > 0) {
    // Once more at the end: a host that looked while gc ran has seen the first
    // mark but not every change. Older marks are no longer needed.
    BLKVAULT_TRY(publish_gc_mark(impl, old_marks));
  }
  BLKVAULT_TRY_ASSIGN(auto marks, impl.storage->list(kGcMarkDir));
  for (size_t i = 0; i + 1 < marks.size(); ++i) BLKVAULT_TRY(impl.storage->remove(marks[i]));

  BLKVAULT_TRY_ASSIGN(auto count, db.query_int("SELECT count(*) FROM packs"));
  BLKVAULT_TRY_ASSIGN(auto bytes, db.query_int("SELECT coalesce(sum(size), 0) FROM packs"));
  report.packs_after = static_cast<uint64_t>(count.value_or(0));
  report.bytes_after = static_cast<uint64_t>(bytes.value_or(0));
  BLKVAULT_TRY_ASSIGN(auto chunks_after, db.query_int("SELECT count(*) FROM chunks"));
  report.chunks_deleted = static_cast<uint64_t>(chunks_before.value_or(0) - chunks_after.value_or(0));
  return report;
}

}  // namespace blkvault::repo
