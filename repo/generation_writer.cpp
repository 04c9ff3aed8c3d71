// GenerationWriter: chunks from many threads into packs, then the commit
// sequence (packs -> manifest -> index) described in repository.h.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include "repo/pack.h"
#include "repo/repository_impl.h"

namespace blkvault::repo {
namespace {

// Publishing attempts of one commit: each lost race means another host
// committed meanwhile, so this many in a row is a broken store, not bad luck.
constexpr int kCommitAttempts = 32;

struct ChunkIdHash {
  size_t operator()(const ChunkId& id) const {
    uint64_t v;
    std::memcpy(&v, id.data(), sizeof v);
    return static_cast<size_t>(v);
  }
};

// A chunk this generation stored in a new pack.
struct NewChunk {
  ChunkId id;
  PackEntry entry;
  uint32_t raw_size;
};

class GenWriter;

class DevWriter final : public DeviceWriter {
 public:
  DevWriter(GenWriter& gen, DeviceRecord rec, int64_t rowid, bool inherit, uint64_t chunk_size)
      : gen_(gen), rec_(std::move(rec)), rowid_(rowid), inherit_(inherit), chunk_size_(chunk_size),
        chunk_count_((rec_.size_bytes + chunk_size - 1) / chunk_size) {}

  Status put(uint64_t chunk_index, std::span<const uint8_t> data) override;
  void set_baseline(std::string baseline) override { rec_.baseline = std::move(baseline); }
  void set_mode(std::string mode, std::string reason, uint64_t changed_bytes) override {
    rec_.mode = std::move(mode);
    rec_.reason = std::move(reason);
    rec_.changed_bytes = changed_bytes;
  }
  void set_cbt_audit(CbtAudit audit) override { rec_.cbt_audit = std::move(audit); }
  void fail(const Error& error) override {
    std::lock_guard g(mu_);
    if (rec_.complete) {
      rec_.complete = false;
      rec_.error = error.message();
    }
  }
  std::optional<GenerationId> parent() const override { return rec_.parent; }
  const DeviceRecord& record() const override {
    rec_.read_bytes = read_bytes_.load();
    rec_.new_bytes = new_bytes_.load();
    rec_.stored_bytes = stored_bytes_.load();
    return rec_;
  }

  // Commit-time (single-threaded, repository mutex held).
  Result<std::vector<MapEntry>> delta(Repository::Impl& repo);
  // Another host committed a generation of this device (the same name) after
  // this one's parent: a delta against the parent would be applied on top of
  // that generation by every index. Records the whole map instead (the
  // parent's map at its generation with the puts over it), with no parent.
  Status rebase(Repository::Impl& repo);
  int64_t rowid() const { return rowid_; }
  bool inherit() const { return inherit_; }
  uint64_t chunk_count() const { return chunk_count_; }

 private:
  friend class GenWriter;
  GenWriter& gen_;
  mutable DeviceRecord rec_;
  int64_t rowid_;
  bool inherit_;
  uint64_t chunk_size_;
  uint64_t chunk_count_;
  std::mutex mu_;
  std::vector<MapEntry> puts_;
  std::optional<std::vector<MapEntry>> rebased_;  // set by rebase(): the whole map
  std::atomic<uint64_t> read_bytes_{0}, new_bytes_{0}, stored_bytes_{0};
};

class GenWriter final : public GenerationWriter {
 public:
  // `condemned`: Impl::condemned_pack_condition(), "" when gc condemned no pack.
  GenWriter(Repository::Impl& repo, GenerationInfo info, const std::string& condemned)
      : repo_(repo),
        info_(std::move(info)),
        // Not a copy in a pack gc condemned: it may be deleted before this commits.
        known_sql_("SELECT 1 FROM chunks WHERE hash = ? AND pack IS NOT NULL" +
                   (condemned.empty() ? std::string() : " AND NOT " + condemned)),
        // A chunk the index knows without a pack (a manifest referenced it and
        // its pack was lost), or in a pack gc condemned, gets this copy.
        fill_sql_("UPDATE chunks SET pack = ?, offset = ?, length = ?, raw_size = ? WHERE hash = ? AND (pack IS NULL" +
                  (condemned.empty() ? std::string() : " OR " + condemned) + ")") {}
  ~GenWriter() override {
    if (!done_) abort(Error(ErrorCode::kCancelled, "the backup stopped before it committed"));
  }

  GenerationId id() const override { return info_.id; }
  const RepoConfig& repo_config() const { return repo_.config; }
  Result<DeviceWriter*> add_device(const std::string& name, uint64_t size_bytes, bool inherit) override;
  Result<GenerationInfo> commit(bool partial) override;
  void abort(const Error& why) override;

  // For DevWriter::put. Returns true when the chunk is new and was stored.
  Result<bool> store(const ChunkId& id, std::span<const uint8_t> data, uint64_t* stored_bytes);

 private:
  Status finish_pack_locked();  // REQUIRES: pack_mu_ held
  // Finishes a full pack outside pack_mu_ (its last part and completion, or
  // fsync and rename), so the other workers go on filling the next one.
  Status finish_detached(std::unique_ptr<PackWriter> pack, size_t slot);
  // Records a published pack and its chunks in the index, so that when this
  // run fails or is killed before it commits, the next backup deduplicates
  // against the pack instead of uploading its chunks again (gc deletes it
  // once no generation references it, as any unreferenced pack).
  // REQUIRES: neither pack_mu_ nor repo_.mu held.
  Status record_published(size_t slot);
  // REQUIRES: repo_.mu held, inside a transaction.
  Status insert_chunks(int64_t pack_row, std::span<const NewChunk> chunks);
  // Waits for every detached finish; the first one's error, if any.
  // REQUIRES: `held` holds pack_mu_.
  Status await_finishing(std::unique_lock<std::mutex>& held);
  Result<GenerationInfo> commit_locked(bool partial);
  // REQUIRES: repo_.mu held, the index synced with the manifests.
  // Moves this generation to the next free id when its own is taken (in the
  // index or by a manifest) or below a committed generation's.
  Status take_free_id();
  // Rebases `d` (DevWriter::rebase) when its parent is no longer the latest
  // generation of its device.
  Status rebase_if_overtaken(DevWriter& d);

  Repository::Impl& repo_;
  GenerationInfo info_;
  bool done_ = false;
  std::vector<std::unique_ptr<DevWriter>> devices_;

  const std::string known_sql_;  // store(): is a chunk already in a pack it may use
  const std::string fill_sql_;   // insert_chunks(): give a placeless or condemned chunk this copy
  std::mutex chunks_mu_;  // known_
  // Chunks this generation stored (or is storing) that the index did not have.
  std::unordered_map<ChunkId, bool, ChunkIdHash> known_;

  std::mutex pack_mu_;  // pack_, packs_, new_chunks_, finishing_, finish_error_
  std::condition_variable finished_cv_;
  size_t finishing_ = 0;  // packs being finished outside the lock
  std::optional<Error> finish_error_;
  std::unique_ptr<PackWriter> pack_;
  struct PackSlot {
    std::string name;
    uint64_t size = 0;         // set once published
    size_t first_chunk = 0;    // its chunks: new_chunks_[first_chunk, end_chunk)
    size_t end_chunk = 0;
    bool recorded = false;     // in the index (record_published)
  };
  std::vector<PackSlot> packs_;  // published or current
  std::vector<NewChunk> new_chunks_;

  CodecPool codecs_{repo_};
};

Status DevWriter::put(uint64_t chunk_index, std::span<const uint8_t> data) {
  if (chunk_index >= chunk_count_) {
    return blkvault::fail(ErrorCode::kInternal, "chunk " + std::to_string(chunk_index) + " is past the end of " + rec_.name);
  }
  const uint64_t expect = std::min(chunk_size_, rec_.size_bytes - chunk_index * chunk_size_);
  if (data.size() != expect) {
    return blkvault::fail(ErrorCode::kInternal, "chunk " + std::to_string(chunk_index) + " of " + rec_.name + " has " +
                                                    std::to_string(data.size()) + " bytes, expected " +
                                                    std::to_string(expect));
  }
  read_bytes_ += data.size();
  MapEntry e{chunk_index, std::nullopt};
  if (!is_all_zero(data)) {
    const ChunkId id = chunk_id(gen_.repo_config().chunk_key, data);
    uint64_t stored = 0;
    BLKVAULT_TRY_ASSIGN(bool is_new, gen_.store(id, data, &stored));
    if (is_new) {
      new_bytes_ += data.size();
      stored_bytes_ += stored;
    }
    e.id = id;
  } else if (!inherit_) {
    // In a full image every chunk not put reads as zeros (delta()): recording
    // the zero ones would only make the map grow with the device's empty space.
    return {};
  }
  std::lock_guard g(mu_);
  puts_.push_back(e);
  return {};
}

Result<std::vector<MapEntry>> DevWriter::delta(Repository::Impl& repo) {
  if (rebased_) return *rebased_;
  std::sort(puts_.begin(), puts_.end(), [](const MapEntry& a, const MapEntry& b) { return a.chunk_index < b.chunk_index; });
  for (size_t i = 1; i < puts_.size(); ++i) {
    if (puts_[i].chunk_index == puts_[i - 1].chunk_index) {
      return blkvault::fail(ErrorCode::kInternal,
                            "chunk " + std::to_string(puts_[i].chunk_index) + " of " + rec_.name + " was put twice");
    }
  }
  std::vector<MapEntry> out;
  if (!rec_.parent) {
    for (const auto& p : puts_) {
      if (p.id) out.push_back(p);
    }
    return out;
  }
  if (inherit_ && puts_.size() < chunk_count_ / 8) {
    // An incremental that put few chunks: look up only those in the parent's map,
    // so a commit costs O(chunks changed), not O(chunks in the device's map).
    std::vector<uint64_t> indices;
    indices.reserve(puts_.size());
    for (const auto& p : puts_) indices.push_back(p.chunk_index);
    BLKVAULT_TRY_ASSIGN(auto previous, repo.live_chunks_at(rowid_, indices));
    for (size_t i = 0; i < puts_.size(); ++i) {
      if (previous[i] != puts_[i].id) out.push_back(puts_[i]);
    }
    return out;
  }
  BLKVAULT_TRY_ASSIGN(auto live, repo.live_map(rowid_));
  std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  // Merge the parent's live map with what was put.
  size_t li = 0;
  auto parent_at = [&](uint64_t idx) -> std::optional<ChunkId> {
    while (li < live.size() && live[li].first < idx) ++li;
    if (li < live.size() && live[li].first == idx) return live[li].second;
    return std::nullopt;
  };
  if (inherit_) {
    for (const auto& p : puts_) {
      if (parent_at(p.chunk_index) != p.id) out.push_back(p);
    }
    return out;
  }
  // A full image: every index not put is zeros.
  size_t pi = 0;
  li = 0;
  while (pi < puts_.size() || li < live.size()) {
    const uint64_t a = pi < puts_.size() ? puts_[pi].chunk_index : UINT64_MAX;
    const uint64_t b = li < live.size() ? live[li].first : UINT64_MAX;
    if (a < b) {
      if (puts_[pi].id) out.push_back(puts_[pi]);
      ++pi;
    } else if (b < a) {
      if (b < chunk_count_) out.push_back(MapEntry{b, std::nullopt});
      ++li;
    } else {
      if (puts_[pi].id != std::optional<ChunkId>(live[li].second)) out.push_back(puts_[pi]);
      ++pi;
      ++li;
    }
  }
  return out;
}

Status DevWriter::rebase(Repository::Impl& repo) {
  const GenerationId parent = *rec_.parent;
  std::sort(puts_.begin(), puts_.end(), [](const MapEntry& a, const MapEntry& b) { return a.chunk_index < b.chunk_index; });
  BLKVAULT_TRY_ASSIGN(auto q, repo.db->prepare("SELECT m.chunk_index, c.hash FROM chunk_map m JOIN chunks c ON c.id = m.chunk "
                                               "WHERE m.device = ? AND m.gen_to > ? AND m.gen_from <= ? AND m.chunk_index < ? "
                                               "ORDER BY m.chunk_index"));
  q.bind(1, rowid_).bind(2, static_cast<int64_t>(parent)).bind(3, static_cast<int64_t>(parent));
  q.bind(4, static_cast<int64_t>(chunk_count_));
  std::vector<MapEntry> full;
  size_t pi = 0;
  auto take_puts_below = [&](uint64_t index) {
    for (; pi < puts_.size() && puts_[pi].chunk_index < index; ++pi) {
      if (puts_[pi].id) full.push_back(puts_[pi]);
    }
  };
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    const auto index = static_cast<uint64_t>(q.int64(0));
    take_puts_below(index);
    if (pi < puts_.size() && puts_[pi].chunk_index == index) continue;  // replaced by a put
    ChunkId id{};
    const auto blob = q.blob(1);
    std::copy_n(blob.begin(), std::min<size_t>(blob.size(), id.size()), id.begin());
    full.push_back(MapEntry{index, id});
  }
  take_puts_below(UINT64_MAX);
  rebased_ = std::move(full);
  rec_.parent.reset();
  inherit_ = false;
  return {};
}

Result<bool> GenWriter::store(const ChunkId& id, std::span<const uint8_t> data, uint64_t* stored_bytes) {
  {
    std::lock_guard g(chunks_mu_);
    if (known_.count(id)) return false;
    std::lock_guard r(repo_.mu);
    BLKVAULT_TRY_ASSIGN(auto q, repo_.db->prepare(known_sql_));
    q.bind_blob(1, id);
    BLKVAULT_TRY_ASSIGN(bool in_index, q.step());
    if (in_index) return false;
    known_.emplace(id, true);  // reserved: another thread with the same chunk references it
  }
  std::unique_ptr<PackWriter> full;
  size_t full_slot = 0;
  {
    // The blob stays in the codec's buffer until the pack has it.
    CodecPool::Lease codec(codecs_);
    BLKVAULT_TRY_ASSIGN(auto blob, codec->seal_view(id, data));
    std::lock_guard g(pack_mu_);
    if (finish_error_) return blkvault::fail(*finish_error_);
    if (!pack_) {
      const std::string hex = random_hex(16);
      const std::string name = "packs/" + hex.substr(0, 2) + "/" + hex;
      BLKVAULT_TRY_ASSIGN(pack_, PackWriter::create(*repo_.storage, name));
      packs_.push_back(PackSlot{name, 0, new_chunks_.size(), new_chunks_.size(), false});
    }
    BLKVAULT_TRY_ASSIGN(PackEntry entry, pack_->append(id, blob));
    new_chunks_.push_back(NewChunk{id, entry, static_cast<uint32_t>(data.size())});
    packs_.back().end_chunk = new_chunks_.size();
    *stored_bytes = blob.size();
    if (pack_->size() >= repo_.config.pack_size) {
      full = std::move(pack_);
      full_slot = packs_.size() - 1;
      ++finishing_;
    }
  }
  if (full) {
    BLKVAULT_TRY(finish_detached(std::move(full), full_slot));
    BLKVAULT_TRY(record_published(full_slot));
  }
  return true;
}

Status GenWriter::finish_detached(std::unique_ptr<PackWriter> pack, size_t slot) {
  Status st = pack->finish();
  std::lock_guard g(pack_mu_);
  if (st) {
    packs_[slot].size = pack->size();
  } else if (!finish_error_) {
    finish_error_ = st.error();
  }
  --finishing_;
  finished_cv_.notify_all();
  return st;
}

Status GenWriter::record_published(size_t slot) {
  std::string name;
  uint64_t size = 0;
  std::vector<NewChunk> chunks;
  {
    std::lock_guard g(pack_mu_);
    const PackSlot& p = packs_[slot];
    name = p.name;
    size = p.size;
    chunks.assign(new_chunks_.begin() + static_cast<ptrdiff_t>(p.first_chunk),
                  new_chunks_.begin() + static_cast<ptrdiff_t>(p.end_chunk));
  }
  std::lock_guard r(repo_.mu);
  BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*repo_.db));
  BLKVAULT_TRY_ASSIGN(int64_t row, repo_.pack_rowid(name, size, true));
  BLKVAULT_TRY(insert_chunks(row, chunks));
  BLKVAULT_TRY(tx.commit());
  std::lock_guard g(pack_mu_);
  packs_[slot].recorded = true;
  return {};
}

Status GenWriter::insert_chunks(int64_t pack_row, std::span<const NewChunk> chunks) {
  // fill_sql_ gives a known chunk this copy; otherwise a new row.
  BLKVAULT_TRY_ASSIGN(auto fill, repo_.db->prepare(fill_sql_));
  BLKVAULT_TRY_ASSIGN(auto add, repo_.db->prepare(
                                    "INSERT OR IGNORE INTO chunks(hash, pack, offset, length, raw_size) VALUES (?, ?, ?, ?, ?)"));
  for (const auto& c : chunks) {
    fill.bind(1, pack_row).bind(2, static_cast<int64_t>(c.entry.offset)).bind(3, int64_t{c.entry.length});
    BLKVAULT_TRY(fill.bind(4, int64_t{c.raw_size}).bind_blob(5, c.id).run());
    add.bind_blob(1, c.id).bind(2, pack_row).bind(3, static_cast<int64_t>(c.entry.offset));
    BLKVAULT_TRY(add.bind(4, int64_t{c.entry.length}).bind(5, int64_t{c.raw_size}).run());
  }
  return {};
}

Status GenWriter::await_finishing(std::unique_lock<std::mutex>& held) {
  finished_cv_.wait(held, [&] { return finishing_ == 0; });
  if (finish_error_) return blkvault::fail(*finish_error_);
  return {};
}

Status GenWriter::take_free_id() {
  BLKVAULT_TRY_ASSIGN(auto q, repo_.db->prepare("SELECT max(id) FROM generations WHERE id != ?"));
  q.bind(1, static_cast<int64_t>(info_.id));
  BLKVAULT_TRY(q.step());
  GenerationId next = q.is_null(0) ? 1 : static_cast<GenerationId>(q.int64(0)) + 1;
  q.reset();
  BLKVAULT_TRY_ASSIGN(auto names, repo_.storage->list("manifests/"));
  for (const auto& n : names) {
    if (auto id = parse_manifest_name(n)) next = std::max(next, *id + 1);
  }
  if (info_.id >= next) return {};
  // The old id's row is this run's own unless a replayed manifest replaced it.
  BLKVAULT_TRY_ASSIGN(auto drop, repo_.db->prepare("DELETE FROM generations WHERE id = ? AND state = 'in-progress'"));
  BLKVAULT_TRY(drop.bind(1, static_cast<int64_t>(info_.id)).run());
  info_.id = next;
  GenerationInfo row = info_;
  row.state = GenerationState::kInProgress;
  row.devices.clear();
  return repo_.insert_generation(row);
}

Status GenWriter::rebase_if_overtaken(DevWriter& d) {
  if (!d.rec_.parent) return {};
  BLKVAULT_TRY_ASSIGN(auto q, repo_.db->prepare(
                                  "SELECT max(gd.generation) FROM generation_devices gd JOIN generations g ON g.id = gd.generation "
                                  "WHERE gd.device = ? AND gd.complete = 1 AND g.state IN ('complete', 'partial', 'pruned') "
                                  "AND gd.generation != ?"));
  q.bind(1, d.rowid()).bind(2, static_cast<int64_t>(info_.id));
  BLKVAULT_TRY(q.step());
  const bool overtaken = !q.is_null(0) && static_cast<GenerationId>(q.int64(0)) != *d.rec_.parent;
  q.reset();
  if (!overtaken) return {};
  repo_.logger().info("device " + d.rec_.name + " was backed up by another host meanwhile; recording its whole map");
  return d.rebase(repo_);
}

Status GenWriter::finish_pack_locked() {
  if (!pack_) return {};
  auto p = std::move(pack_);
  BLKVAULT_TRY(p->finish());
  packs_.back().size = p->size();
  return {};
}

Result<DeviceWriter*> GenWriter::add_device(const std::string& name, uint64_t size_bytes, bool inherit) {
  for (const auto& d : devices_) {
    if (d->rec_.name == name) {
      return blkvault::fail(ErrorCode::kInvalidArgument, "device " + name + " is named twice");
    }
  }
  if (size_bytes == 0) return blkvault::fail(ErrorCode::kInvalidArgument, "device " + name + " has size 0");
  std::lock_guard r(repo_.mu);
  DeviceRecord rec;
  rec.name = name;
  rec.size_bytes = size_bytes;
  rec.mode = inherit ? "incremental" : "full";
  BLKVAULT_TRY_ASSIGN(auto last, repo_.last_good_locked(name));
  // An incremental is a delta against the last good generation; a full read
  // records the whole map and starts a new chain (so gc can later drop the
  // manifests of removed generations before it).
  if (last && inherit) {
    rec.parent = last->generation;
    if (last->record.size_bytes != size_bytes) {
      return blkvault::fail(ErrorCode::kInternal,
                            "device " + name + " changed size since generation " + std::to_string(last->generation) +
                                "; an incremental backup cannot build on it (read it in full)");
    }
  } else {
    inherit = false;
  }
  BLKVAULT_TRY_ASSIGN(int64_t rowid, repo_.device_rowid(name, true));
  devices_.push_back(std::make_unique<DevWriter>(*this, std::move(rec), rowid, inherit, repo_.config.chunk_size));
  return static_cast<DeviceWriter*>(devices_.back().get());
}

Result<GenerationInfo> GenWriter::commit(bool partial) {
  if (done_) return blkvault::fail(ErrorCode::kInternal, "generation " + std::to_string(info_.id) + " already ended");
  size_t ok = 0;
  for (const auto& d : devices_) {
    if (d->rec_.complete) {
      ++ok;
    } else if (!partial) {
      Error e(ErrorCode::kIo, "device " + d->rec_.name + " failed: " + d->rec_.error);
      abort(e);
      return tl::unexpected(e);
    }
  }
  if (ok == 0) {
    Error e(ErrorCode::kIo, devices_.empty() ? "the generation has no devices" : "no device was backed up");
    abort(e);
    return tl::unexpected(e);
  }
  auto r = commit_locked(partial);
  if (!r) abort(r.error());
  return r;
}

Result<GenerationInfo> GenWriter::commit_locked(bool partial) {
  // 1. Packs: durable and published.
  {
    std::unique_lock g(pack_mu_);
    BLKVAULT_TRY(await_finishing(g));
    BLKVAULT_TRY(finish_pack_locked());
  }
  for (size_t slot = 0; slot < packs_.size(); ++slot) {
    if (!packs_[slot].recorded) BLKVAULT_TRY(record_published(slot));
  }
  std::lock_guard r(repo_.mu);
  // 2. The manifest, published under a generation id no other host has taken
  // (docs/FORMAT.md, "Commit protocol"): learn what others committed while
  // this backup ran, take the next free id when this one is taken or older
  // than a committed one, and publish without overwriting; when another host
  // published the same id first, do it all again.
  std::set<std::string> own_packs;
  for (const auto& p : packs_) own_packs.insert(p.name);
  Manifest m;
  std::string name;
  for (int attempt = 1;; ++attempt) {
    // A process that stalled past the staleness timeout may have lost its
    // marker to a gc that then deleted what this generation references.
    if (repo_.lock) BLKVAULT_TRY(repo_.lock->check_held());
    BLKVAULT_TRY(repo_.replay_manifests(own_packs, nullptr));
    BLKVAULT_TRY(take_free_id());
    m = Manifest{};
    m.repository_id = repo_.config.id;
    m.chunk_size = repo_.config.chunk_size;
    info_.finished_ms = now_ms();
    info_.devices.clear();
    bool any_failed = false;
    for (auto& d : devices_) {
      d->record();  // folds the counters into rec_
      std::vector<MapEntry> delta;
      if (d->rec_.complete) {
        BLKVAULT_TRY(rebase_if_overtaken(*d));
        BLKVAULT_TRY_ASSIGN(delta, d->delta(repo_));
        d->rec_.chunks_changed = delta.size();
      } else {
        any_failed = true;
      }
      info_.devices.push_back(d->rec_);
      m.deltas.push_back(std::move(delta));
    }
    info_.state = partial && any_failed ? GenerationState::kPartial : GenerationState::kComplete;
    m.generation = info_;
    name = manifest_name(info_.id);
    BLKVAULT_TRY_ASSIGN(const auto bytes, repo_.seal_metadata(name, m.encode()));
    auto put = repo_.storage->put(name, bytes);
    if (put) break;
    const bool taken = put.error().code() == ErrorCode::kInvalidArgument && put.error().sys_errno() == EEXIST;
    if (!taken || attempt >= kCommitAttempts) {
      return tl::unexpected(std::move(put).error().wrap("publishing generation " + std::to_string(info_.id)));
    }
    repo_.logger().info("generation " + std::to_string(info_.id) +
                        " was committed by another host meanwhile; committing under the next free id");
  }

  // 3. The index, in one transaction.
  auto indexed = [&]() -> Status {
    BLKVAULT_TRY_ASSIGN(auto tx, sql::Transaction::begin(*repo_.db));
    BLKVAULT_TRY(repo_.insert_generation(info_));
    for (size_t i = 0; i < devices_.size(); ++i) {
      const auto& d = *devices_[i];
      BLKVAULT_TRY(repo_.insert_device_record(info_.id, d.rec_));
      if (!d.rec_.complete) continue;
      BLKVAULT_TRY(repo_.apply_delta(d.rowid(), info_.id, d.rec_.parent.has_value(), d.chunk_count(), m.deltas[i]));
    }
    return tx.commit();
  }();
  if (!indexed) {
    // Keep what the user was told true: the generation did not happen.
    (void)repo_.storage->remove(name);
    return tl::unexpected(std::move(indexed).error().wrap("recording generation " + std::to_string(info_.id) + " in the index"));
  }
  done_ = true;
  return info_;
}

void GenWriter::abort(const Error& why) {
  if (done_) return;
  done_ = true;
  {
    std::unique_lock g(pack_mu_);
    (void)await_finishing(g);
    pack_.reset();  // an unfinished pack is discarded; finished ones wait for gc
  }
  std::lock_guard r(repo_.mu);
  info_.state = GenerationState::kFailed;
  info_.finished_ms = now_ms();
  info_.error = why.message();
  info_.devices.clear();
  (void)repo_.insert_generation(info_);
}

}  // namespace

Result<std::unique_ptr<GenerationWriter>> Repository::begin_generation(std::string host, std::string tool_version) {
  if (!impl_->lock) return fail(ErrorCode::kInternal, "begin_generation needs the repository opened for writing");
  std::lock_guard r(impl_->mu);
  BLKVAULT_TRY_ASSIGN(auto max_id, impl_->db->query_int("SELECT max(id) FROM generations"));
  GenerationId id = static_cast<GenerationId>(max_id.value_or(0)) + 1;
  // Never reuse the id of a manifest the index could not read.
  BLKVAULT_TRY_ASSIGN(auto names, impl_->storage->list("manifests/"));
  for (const auto& n : names) {
    if (auto m = parse_manifest_name(n)) id = std::max(id, *m + 1);
  }
  if (id > kMaxGenerationId) {
    return fail(ErrorCode::kUnsupported, "the repository has used every generation id (up to " +
                                             std::to_string(kMaxGenerationId) + "): start a new repository");
  }
  GenerationInfo info;
  info.id = id;
  info.state = GenerationState::kInProgress;
  info.started_ms = now_ms();
  info.finished_ms = 0;
  info.host = std::move(host);
  info.tool_version = std::move(tool_version);
  BLKVAULT_TRY_ASSIGN(std::string condemned, impl_->condemned_pack_condition());
  BLKVAULT_TRY(impl_->insert_generation(info));
  return std::unique_ptr<GenerationWriter>(new GenWriter(*impl_, std::move(info), condemned));
}

}  // namespace blkvault::repo
