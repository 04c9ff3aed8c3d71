// Removing generations (forget) and reclaiming space (gc).
//
// gc never deletes what it has just found to be garbage while a backup may be
// running (object storage, repo/condemned.h): it condemns it, and carries the
// condemnation out once the backups alive at that moment have ended, deleting
// only what is still garbage then. Its order of work:
//   1. plan: the manifests of removed generations nothing needs, packs with
//      nothing live, packs mostly garbage, and leftovers (packs the index does
//      not know, temp files of interrupted writes, orphaned tombstones,
//      unfinished multipart uploads);
//   2. condemn what is garbage and not yet condemned;
//   3. carry out every ripe condemnation: replay the manifests committed
//      meanwhile, then in one index transaction drop the removed generations
//      whose manifests go and every map row nothing reads, delete those
//      manifests and tombstones, the packs with still nothing live (index
//      rows first, then the files), the leftovers, and the condemnation;
//   4. rewrite packs mostly garbage: live blobs are checked and copied into a
//      new pack that is published durably, then one transaction moves the
//      chunks to it; the old pack is condemned and, when ripe, deleted.
// With no backup able to run (a local directory's flock, or the exclusive
// lock) condemnations are not published and are carried out at once.
// Garbage goes before the rewrites, so a nearly full filesystem has its space
// for them; when the filesystem is full all the same, the rewrite stops with
// a warning and no error, and the packs not rewritten stay intact.
// Files are only deleted after the index stops referencing them, and a file the
// index does not reference is only ever deleted once every backup that might
// still commit a reference to it has ended.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "repo/condemned.h"
#include "repo/lock.h"
#include "repo/pack.h"
#include "repo/repository_impl.h"
#include "repo/s3_storage.h"

namespace blkvault::repo {

std::string tombstone_name(GenerationId id) { return numbered_name("pruned/", id); }
std::optional<GenerationId> parse_tombstone_name(std::string_view name) { return parse_numbered_name("pruned/", name); }

Status Repository::forget(const std::vector<GenerationId>& ids) {
  if (!impl_->lock || !impl_->maintenance) return fail(ErrorCode::kInternal, "forget needs the repository opened for writing (not shared)");
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

// A chunk-map row gc keeps although no remaining generation reads it: a row
// still current (gen_to open) of a device whose newest committed generation
// was removed. A backup that started before the removal may be building on
// that generation, so its map must stay until its manifest is deleted. (Never
// NULL: a device with no generation left has none of these rows.)
constexpr std::string_view kCurrentRowOfRemovedNewest =
    "(chunk_map.gen_to = 2147483647 AND coalesce((SELECT g.state FROM generations g JOIN generation_devices gd "
    "ON gd.generation = g.id WHERE gd.device = chunk_map.device AND gd.complete = 1 AND g.state IN "
    "('complete', 'partial', 'pruned') ORDER BY g.id DESC LIMIT 1), '') = 'pruned')";
static_assert(kOpenEnd == 2147483647, "kCurrentRowOfRemovedNewest spells kOpenEnd");

std::string live_rows() { return "(" + std::string(kLiveRow) + " OR " + std::string(kCurrentRowOfRemovedNewest) + ")"; }

// Removed generations whose manifests nothing needs: not every remaining
// generation, nor an ancestor its devices' deltas are stored against.
Result<std::vector<GenerationId>> unneeded_manifests(sql::Db& db) {
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
  std::vector<GenerationId> out;
  for (const auto& [id, st] : states) {
    if (st == GenerationState::kPruned && !needed.count(id)) out.push_back(id);
  }
  return out;
}

// Every indexed pack with the bytes and chunks in it that the chunk-map rows
// matching `rows` (an SQL condition on chunk_map) read.
Result<std::vector<PackRow>> pack_liveness(sql::Db& db, const std::string& rows) {
  std::vector<PackRow> packs;
  BLKVAULT_TRY_ASSIGN(auto q, db.prepare(
                                  "SELECT p.id, p.name, p.size, "
                                  "coalesce(sum(CASE WHEN l.chunk IS NOT NULL THEN c.length END), 0), count(l.chunk) "
                                  "FROM packs p LEFT JOIN chunks c ON c.pack = p.id "
                                  "LEFT JOIN (SELECT DISTINCT chunk FROM chunk_map WHERE " + rows + ") l ON l.chunk = c.id "
                                  "GROUP BY p.id ORDER BY p.id"));
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    PackRow p{q.int64(0), q.text(1), static_cast<uint64_t>(q.int64(2))};
    p.live_bytes = static_cast<uint64_t>(q.int64(3));
    p.live_chunks = static_cast<uint64_t>(q.int64(4));
    packs.push_back(std::move(p));
  }
  return packs;
}

Status refuse_unread_manifests(Repository::Impl& impl) {
  // A manifest the index could not read may reference packs it does not know:
  // deleting "unreferenced" data would then destroy that generation for good.
  BLKVAULT_TRY_ASSIGN(auto unread, impl.unindexed_manifests());
  if (!unread.empty()) {
    return fail(ErrorCode::kCorrupt, "manifest " + manifest_name(unread.front()) +
                                         " cannot be read into the index (see blkvault verify); gc would delete "
                                         "data it may reference, so it stops here");
  }
  return {};
}

// The backup markers alive now; a stale one is deleted, with a warning.
Result<std::vector<LiveBackup>> live_backups(Repository::Impl& impl) {
  std::vector<std::string> broke;
  auto live = RepoLock::live_backups(*impl.storage, ObjectLockOptions::from_environment(), &broke);
  for (const auto& b : broke) impl.logger().warning("removed the stale backup marker of " + b);
  return live;
}

// The holders of the live markers among `listed`.
std::vector<std::string> still_running(const std::vector<std::string>& listed, const std::vector<LiveBackup>& live) {
  std::vector<std::string> out;
  for (const auto& b : live) {
    if (std::find(listed.begin(), listed.end(), b.name) != listed.end()) out.push_back(b.holder);
  }
  return out;
}

// Deletes what the ripe condemnations list and is still garbage now, after
// replaying the manifests the backups they waited for committed meanwhile;
// then the condemnations themselves. `rewritten`: old packs this run rewrote
// (counted as rewritten, not as deleted).
Status execute(Repository::Impl& impl, const std::vector<Condemnation>& ripe, const std::set<std::string>& rewritten,
               GcReport& report) {
  auto& db = *impl.db;
  BLKVAULT_TRY(impl.sync_index());
  BLKVAULT_TRY(refuse_unread_manifests(impl));

  std::set<GenerationId> condemned_manifests;
  std::set<std::string> condemned_packs, files;
  std::set<UploadRef> uploads;
  for (const auto& c : ripe) {
    condemned_manifests.insert(c.manifests.begin(), c.manifests.end());
    condemned_packs.insert(c.packs.begin(), c.packs.end());
    files.insert(c.files.begin(), c.files.end());
    uploads.insert(c.uploads.begin(), c.uploads.end());
  }
  BLKVAULT_TRY_ASSIGN(auto unneeded, unneeded_manifests(db));
  std::vector<GenerationId> drop;
  for (auto id : unneeded) {
    if (condemned_manifests.count(id)) drop.push_back(id);
  }

  // The index forgets the dropped generations, then every map row nothing
  // reads any more, in one transaction.
  {
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(db));
    BLKVAULT_TRY_ASSIGN(auto del_gen, db.prepare("DELETE FROM generations WHERE id = ?"));
    BLKVAULT_TRY_ASSIGN(auto del_dev, db.prepare("DELETE FROM generation_devices WHERE generation = ?"));
    for (auto id : drop) {
      BLKVAULT_TRY(del_gen.bind(1, static_cast<int64_t>(id)).run());
      BLKVAULT_TRY(del_dev.bind(1, static_cast<int64_t>(id)).run());
    }
    BLKVAULT_TRY(db.exec("DELETE FROM chunk_map WHERE NOT " + live_rows()));
    BLKVAULT_TRY(db.exec("DELETE FROM chunks WHERE pack IS NULL AND id NOT IN (SELECT chunk FROM chunk_map)"));
    BLKVAULT_TRY(tx.commit());
  }
  for (auto id : drop) {
    BLKVAULT_TRY(impl.storage->remove(manifest_name(id)));
    BLKVAULT_TRY(impl.storage->remove(tombstone_name(id)));
    report.manifests_deleted++;
  }

  // Packs: those the index knows only when nothing left reads them; others
  // (an interrupted backup's, or another host's) unless a backup that
  // committed meanwhile made the index learn them.
  BLKVAULT_TRY_ASSIGN(auto packs, pack_liveness(db, "1"));
  std::map<std::string, const PackRow*> indexed;
  for (const auto& p : packs) indexed[p.name] = &p;
  std::vector<const PackRow*> dead;
  std::vector<std::string> unindexed;
  for (const auto& name : condemned_packs) {
    auto it = indexed.find(name);
    if (it == indexed.end()) {
      unindexed.push_back(name);
    } else if (it->second->live_chunks == 0) {
      dead.push_back(it->second);
    }
  }
  if (!dead.empty()) {
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(db));
    BLKVAULT_TRY_ASSIGN(auto dc, db.prepare("DELETE FROM chunks WHERE pack = ?"));
    BLKVAULT_TRY_ASSIGN(auto dp, db.prepare("DELETE FROM packs WHERE id = ?"));
    for (const auto* p : dead) {
      BLKVAULT_TRY(dc.bind(1, p->id).run());
      BLKVAULT_TRY(dp.bind(1, p->id).run());
    }
    BLKVAULT_TRY(tx.commit());
    for (const auto* p : dead) {
      BLKVAULT_TRY(impl.storage->remove(p->name));
      if (!rewritten.count(p->name)) report.packs_deleted++;
    }
  }
  for (const auto& name : unindexed) {
    BLKVAULT_TRY(impl.storage->remove(name));
    report.leftovers_deleted++;
  }
  for (const auto& name : files) {
    BLKVAULT_TRY(impl.storage->remove(name));
    report.leftovers_deleted++;
  }
  if (!uploads.empty()) {
    auto* s3 = dynamic_cast<S3Storage*>(impl.storage.get());
    for (const auto& u : uploads) {
      if (s3 != nullptr) BLKVAULT_TRY(s3->abort_upload(u.key, u.upload_id));
      report.leftovers_deleted++;
    }
  }
  for (const auto& c : ripe) {
    if (!c.name.empty()) BLKVAULT_TRY(remove_condemnation(*impl.storage, c));  // unpublished when gc ran alone
  }
  return {};
}

}  // namespace

Result<GcReport> Repository::gc(const GcOptions& options, const CancelToken* cancel) {
  if (!impl_->lock || !impl_->maintenance) return fail(ErrorCode::kInternal, "gc needs the repository opened for writing (not shared)");
  auto& impl = *impl_;
  std::lock_guard guard(impl.mu);
  auto& db = *impl.db;
  GcReport report;
  // The manifests other hosts' backups committed since this index was synced.
  BLKVAULT_TRY(impl.sync_index());
  BLKVAULT_TRY(refuse_unread_manifests(impl));

  // Earlier condemnations: one without its ".backups" file is void (its gc
  // stopped before it listed the backups); its items are condemned anew.
  BLKVAULT_TRY_ASSIGN(auto earlier, load_condemnations(*impl.storage));
  std::vector<Condemnation> valid, void_ones;
  std::set<std::string> held_packs, held_files;
  std::set<GenerationId> held_manifests;
  std::set<UploadRef> held_uploads;
  for (auto& c : earlier) {
    if (c.damage) impl.logger().warning(*c.damage + "; it is void, and what it listed is condemned anew");
    if (!c.backups || c.damage) {
      void_ones.push_back(std::move(c));
      continue;
    }
    held_packs.insert(c.packs.begin(), c.packs.end());
    held_files.insert(c.files.begin(), c.files.end());
    held_manifests.insert(c.manifests.begin(), c.manifests.end());
    held_uploads.insert(c.uploads.begin(), c.uploads.end());
    valid.push_back(std::move(c));
  }

  // The plan: what no remaining generation needs, as the index sees it now.
  BLKVAULT_TRY_ASSIGN(auto drop_manifests, unneeded_manifests(db));
  BLKVAULT_TRY_ASSIGN(auto packs, pack_liveness(db, std::string(kLiveRow)));
  for (const auto& p : packs) {
    report.packs_before++;
    report.bytes_before += p.size;
  }
  std::set<std::string> indexed_packs;
  for (const auto& p : packs) indexed_packs.insert(p.name);
  std::vector<std::string> unindexed, files;
  for (const char* dir : {"packs/", "manifests/", "pruned/", "condemned/"}) {
    if (std::string_view(dir) == "packs/") {
      BLKVAULT_TRY_ASSIGN(auto names, impl.storage->list(dir));
      for (const auto& n : names) {
        if (!indexed_packs.count(n)) unindexed.push_back(n);
      }
    }
    BLKVAULT_TRY_ASSIGN(auto temps, impl.storage->list_unpublished(dir));
    files.insert(files.end(), temps.begin(), temps.end());
  }
  {
    // Tombstones whose manifest is gone.
    BLKVAULT_TRY_ASSIGN(auto tombs, impl.storage->list("pruned/"));
    BLKVAULT_TRY_ASSIGN(auto mans, impl.storage->list("manifests/"));
    const std::set<std::string> have(mans.begin(), mans.end());
    for (const auto& t : tombs) {
      auto id = parse_tombstone_name(t);
      if (id && !have.count(manifest_name(*id))) files.push_back(t);
    }
  }
  // Unfinished multipart uploads: listed before the backup markers are, so
  // each belongs to a backup among them, or to one that is gone.
  std::vector<UploadRef> uploads;
  if (auto* s3 = dynamic_cast<S3Storage*>(impl.storage.get())) {
    BLKVAULT_TRY_ASSIGN(auto listed, s3->list_uploads());
    for (auto& u : listed) uploads.push_back({std::move(u.key), std::move(u.upload_id)});
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
    report.leftovers_deleted = unindexed.size() + files.size() + uploads.size();
    uint64_t after = report.bytes_before;
    for (const auto* p : empty) after -= p->size;
    for (const auto* p : sparse) after -= p->size - p->live_bytes;
    report.bytes_after = after;
    report.packs_after = report.packs_before - empty.size();
    return report;
  }

  BLKVAULT_TRY_ASSIGN(auto chunks_before, db.query_int("SELECT count(*) FROM chunks"));
  BLKVAULT_TRY_ASSIGN(auto old_marks, impl.storage->list(kGcMarkDir));

  // Backups run alongside this gc only on object storage under the lock of
  // OpenOptions::backups_alongside. Otherwise (a local directory's flock, or
  // the exclusive lock that waited for every backup) none can, and what gc
  // condemns is carried out at once without being published: a full
  // filesystem still gets its space back.
  const bool alone = impl.exclusive;
  // Condemns `c`: a gc mark first (a backup that sees the condemnation also
  // learns the packs the rewrites made), the list, then the backups alive now
  // (repo/condemned.h).
  bool marked = false;
  auto condemn = [&](Condemnation& c) -> Status {
    BLKVAULT_TRY(publish_gc_mark(impl, old_marks));
    marked = true;
    if (alone) {
      c.backups.emplace();
      return {};
    }
    BLKVAULT_TRY(publish_condemnation(*impl.storage, c));
    BLKVAULT_TRY_ASSIGN(auto live, live_backups(impl));
    std::vector<std::string> names;
    for (const auto& b : live) names.push_back(b.name);
    BLKVAULT_TRY(publish_backups(*impl.storage, c, names));
    c.backups = std::move(names);
    return {};
  };
  // Splits `conds` into the ripe ones (every backup listed with them has
  // ended) and the pending ones, waiting up to `wait_s` for the latter.
  std::vector<Condemnation> pending;
  auto ripen = [&](std::vector<Condemnation> conds, double wait_s) -> Result<std::vector<Condemnation>> {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
    for (;;) {
      BLKVAULT_TRY_ASSIGN(auto live, live_backups(impl));
      std::vector<Condemnation> ripe, waiting;
      std::vector<std::string> holders;
      for (auto& c : conds) {
        auto running = still_running(*c.backups, live);
        if (running.empty()) {
          ripe.push_back(c);
          continue;
        }
        waiting.push_back(c);
        for (auto& h : running) {
          if (std::find(holders.begin(), holders.end(), h) == holders.end()) holders.push_back(std::move(h));
        }
      }
      if (waiting.empty() || std::chrono::steady_clock::now() >= deadline) {
        for (auto& h : holders) {
          if (std::find(report.waiting_for.begin(), report.waiting_for.end(), h) == report.waiting_for.end()) {
            report.waiting_for.push_back(std::move(h));
          }
        }
        pending.insert(pending.end(), waiting.begin(), waiting.end());
        return ripe;
      }
      if (cancel != nullptr && cancel->cancelled()) return fail(ErrorCode::kCancelled, "gc interrupted");
      std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    }
  };

  // Steps 2 and 3 (docs/FORMAT.md numbers them): what is garbage now and not
  // yet condemned is condemned, and every ripe condemnation carried out.
  // Before the rewrites, so that a nearly full filesystem has this space for
  // them.
  Condemnation fresh;
  for (auto id : drop_manifests) {
    if (!held_manifests.count(id)) fresh.manifests.push_back(id);
  }
  for (const auto* p : empty) {
    if (!held_packs.count(p->name)) fresh.packs.push_back(p->name);
  }
  for (const auto& n : unindexed) {
    if (!held_packs.count(n)) fresh.packs.push_back(n);
  }
  for (const auto& n : files) {
    if (!held_files.count(n)) fresh.files.push_back(n);
  }
  for (const auto& u : uploads) {
    if (!held_uploads.count(u)) fresh.uploads.push_back(u);
  }
  if (!fresh.empty()) {
    BLKVAULT_TRY(condemn(fresh));
    valid.push_back(std::move(fresh));
  }
  {
    BLKVAULT_TRY_ASSIGN(auto ripe, ripen(std::move(valid), options.wait_s));
    if (!ripe.empty()) {
      if (!marked) BLKVAULT_TRY(publish_gc_mark(impl, old_marks));  // before the first deletion
      BLKVAULT_TRY(execute(impl, ripe, {}, report));
    }
  }

  // Step 4: a pack mostly garbage has its live blobs copied into a new pack,
  // published durably, and the index moves them there in one transaction;
  // the old pack, with nothing live left in it, is then condemned. Out of
  // space, it stops: the unpublished new pack is discarded and the old one
  // stays referenced. Planned again: carrying out replayed the generations
  // committed meanwhile (and may have rebuilt the index).
  BLKVAULT_TRY_ASSIGN(auto now_packs, pack_liveness(db, std::string(kLiveRow)));
  sparse.clear();
  for (const auto& p : now_packs) {
    if (p.live_chunks > 0 && static_cast<double>(p.live_bytes) < options.repack_below * static_cast<double>(p.size)) {
      sparse.push_back(&p);
    }
  }
  auto out_of_space = [&](const PackRow& p, const Error& e) {
    report.warnings.push_back("not rewriting pack " + p.name + " (" + std::to_string(p.size - p.live_bytes) +
                              " bytes of garbage) nor any after it: " + e.message() +
                              "; free some space and run gc again");
  };
  auto codec_ptr = impl.make_codec();
  ChunkCodec& codec = *codec_ptr;
  std::set<std::string> rewritten;
  Condemnation old_packs;  // the rewritten ones
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
                                      "c.id IN (SELECT chunk FROM chunk_map WHERE " + live_rows() + ") ORDER BY c.offset"));
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
    BLKVAULT_TRY(tx.commit());
    report.packs_rewritten++;
    rewritten.insert(p->name);
    if (!held_packs.count(p->name)) old_packs.packs.push_back(p->name);
  }

  if (!old_packs.empty()) {
    BLKVAULT_TRY(condemn(old_packs));
    BLKVAULT_TRY_ASSIGN(auto ripe, ripen({std::move(old_packs)}, 0));
    if (!ripe.empty()) BLKVAULT_TRY(execute(impl, ripe, rewritten, report));
  }
  for (const auto& c : void_ones) BLKVAULT_TRY(remove_condemnation(*impl.storage, c));
  BLKVAULT_TRY(remove_orphan_backups(*impl.storage));

  std::map<std::string, uint64_t> pack_size;
  for (const auto& p : packs) pack_size[p.name] = p.size;
  for (const auto& c : pending) {
    report.manifests_pending += c.manifests.size();
    for (const auto& n : c.packs) {
      report.packs_pending++;
      auto it = pack_size.find(n);
      if (it != pack_size.end()) report.bytes_pending += it->second;
    }
  }

  if (report.packs_deleted + report.packs_rewritten + report.leftovers_deleted + report.manifests_deleted > 0) {
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
  report.chunks_deleted = static_cast<uint64_t>(std::max<int64_t>(0, chunks_before.value_or(0) - chunks_after.value_or(0)));
  return report;
}

}  // namespace blkvault::repo
