// Reading generations back: chunk reads, restore, and verify.
#include <algorithm>
#include <tuple>
#include <atomic>
#include <map>
#include <set>
#include <unordered_map>

#include "repo/index_check.h"
#include "repo/pack.h"
#include "repo/repository_impl.h"
#include "repo/parallel.h"
#include "repo/verify_progress.h"

namespace blkvault::repo {
namespace {


// Opens one blob read from `pack` at `offset` into `data`; checks it is `id`
// and `raw_size` bytes.
Status open_blob_into(std::span<const uint8_t> bytes, const std::string& pack, uint64_t offset, const ChunkId& id,
                      uint32_t raw_size, const ChunkKey& key, ChunkCodec& codec, std::vector<uint8_t>& data) {
  const std::string where = pack + " at offset " + std::to_string(offset);
  BLKVAULT_TRY_ASSIGN(auto header, BlobHeader::decode(bytes.first(std::min(bytes.size(), BlobHeader::kSize)), where));
  if (header.id != id) {
    return fail(ErrorCode::kCorrupt, "chunk " + to_hex(id) + " in " + where + ": the blob there is chunk " +
                                         to_hex(header.id));
  }
  BLKVAULT_TRY(codec.open_into(header, bytes.subspan(BlobHeader::kSize), key, where, data));
  if (data.size() != raw_size) {
    return fail(ErrorCode::kCorrupt, "chunk " + to_hex(id) + " in " + where + ": " + std::to_string(data.size()) +
                                         " bytes, the index says " + std::to_string(raw_size));
  }
  return {};
}

Result<std::vector<uint8_t>> open_blob(std::span<const uint8_t> bytes, const std::string& pack, uint64_t offset,
                                       const ChunkId& id, uint32_t raw_size, const ChunkKey& key, ChunkCodec& codec) {
  std::vector<uint8_t> data;
  BLKVAULT_TRY(open_blob_into(bytes, pack, offset, id, raw_size, key, codec, data));
  return data;
}

// Reads `length` bytes of `pack` at `offset`; a pack the index references
// that is gone is damage (exit 3), not a wrong name.
Result<std::vector<uint8_t>> read_pack_range(Storage& storage, const std::string& pack, uint64_t offset,
                                             uint64_t length) {
  auto got = storage.get_range(pack, offset, length);
  if (!got && got.error().code() == ErrorCode::kNotFound) return fail(std::move(got).error().with_code(ErrorCode::kCorrupt));
  return got;
}

// The same into `out` (Storage::get_range_into).
Status read_pack_range_into(Storage& storage, const std::string& pack, uint64_t offset, uint64_t length,
                            std::vector<uint8_t>& out) {
  auto got = storage.get_range_into(pack, offset, length, out);
  if (!got && got.error().code() == ErrorCode::kNotFound) return fail(std::move(got).error().with_code(ErrorCode::kCorrupt));
  return got;
}

// Reads and opens one blob; checks it is `id` and `raw_size` bytes.
Result<std::vector<uint8_t>> read_blob(Storage& storage, const std::string& pack, uint64_t offset, uint32_t length,
                                       const ChunkId& id, uint32_t raw_size, const ChunkKey& key, ChunkCodec& codec) {
  if (length < BlobHeader::kSize) {
    return fail(ErrorCode::kCorrupt, "chunk " + to_hex(id) + " in " + pack + " at offset " + std::to_string(offset) +
                                         ": the index gives a bad length");
  }
  BLKVAULT_TRY_ASSIGN(auto bytes, read_pack_range(storage, pack, offset, length));
  return open_blob(bytes, pack, offset, id, raw_size, key, codec);
}

// The bytes chunk `index` of `image` holds: the chunk size, less for the last.
uint64_t chunk_bytes(const DeviceImage& image, uint64_t index) {
  const uint64_t offset = index * image.chunk_size;
  return std::min(image.chunk_size, image.size_bytes - std::min(image.size_bytes, offset));
}

// Chunks of a restore stored back to back in one pack are read with one
// request: object storage pays per request, a local pack one pread instead of
// many. A run is at most this long, so memory stays bounded by the workers.
constexpr uint64_t kRunBytes = 4 << 20;
constexpr size_t kRunChunks = 32;

// Cuts [first, last) of blobs sorted by pack and offset into runs one request
// can read: each blob in the previous one's pack right after it, at most
// kRunChunks blobs and kRunBytes. `at(i)` is the i-th blob's {pack, offset,
// length}.
template <class At>
std::vector<std::pair<size_t, size_t>> neighbour_runs(size_t first, size_t last, const At& at) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = first; i < last;) {
    size_t j = i + 1;
    uint64_t bytes = std::get<2>(at(i));
    while (j < last && j - i < kRunChunks) {
      const auto [prev_pack, prev_offset, prev_length] = at(j - 1);
      const auto [pack, offset, length] = at(j);
      if (pack != prev_pack || offset != prev_offset + prev_length || bytes + length > kRunBytes ||
          length < BlobHeader::kSize) {
        break;
      }
      bytes += length;
      ++j;
    }
    runs.emplace_back(i, j);
    i = j;
  }
  return runs;
}

// The chunks of a restore in pack order (`order`: indexes into `chunks`, by
// pack and offset; parallel workers store neighbouring chunks in either order,
// so device order would break the runs), cut into runs: [first, last) of
// `order`.
std::vector<std::pair<size_t, size_t>> contiguous_runs(const std::vector<ChunkRef>& chunks,
                                                       std::vector<size_t>& order) {
  order.resize(chunks.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(chunks[a].pack, chunks[a].offset) < std::tie(chunks[b].pack, chunks[b].offset);
  });
  return neighbour_runs(0, order.size(), [&](size_t i) {
    const ChunkRef& c = chunks[order[i]];
    return std::tuple(c.pack, c.offset, uint64_t{c.length});
  });
}

}  // namespace

Result<std::vector<uint8_t>> Repository::read_chunk(const DeviceImage& image, const ChunkRef& ref, ChunkCodec& codec) {
  const uint64_t offset = ref.chunk_index * image.chunk_size;
  const uint64_t expect = chunk_bytes(image, ref.chunk_index);
  const std::string reading = "reading offset " + std::to_string(offset) + " of " + image.device + " in generation " +
                              std::to_string(image.generation);
  if (ref.raw_size != expect) {
    // Named like every other failure here, so the damaged range is in the message.
    return fail(Error(ErrorCode::kCorrupt, "chunk " + to_hex(ref.id) + " has " + std::to_string(ref.raw_size) +
                                               " bytes in the index, expected " + std::to_string(expect))
                    .wrap(reading));
  }
  auto data = read_blob(*impl_->storage, image.packs.at(ref.pack), ref.offset, ref.length, ref.id, ref.raw_size,
                        impl_->config.chunk_key, codec);
  if (!data) return fail(std::move(data.error()).wrap(reading));
  return data;
}

Result<RestoreStats> Repository::restore(const DeviceImage& image, RestoreSink& sink, size_t threads,
                                         const CancelToken* cancel, const std::function<void(uint64_t)>& progress) {
  RestoreStats stats;
  // A value flipped inside the index must not become wrong bytes.
  BLKVAULT_TRY(check_image_against_manifests(*impl_, image));
  // Holes first: everything the map does not list reads as zeros.
  uint64_t at = 0;
  auto hole_to = [&](uint64_t end) -> Status {
    if (end > at) {
      BLKVAULT_TRY(sink.zero(at, end - at));
      stats.bytes_zero += end - at;
    }
    return {};
  };
  for (const auto& c : image.chunks) {
    BLKVAULT_TRY(hole_to(c.chunk_index * image.chunk_size));
    at = c.chunk_index * image.chunk_size + c.raw_size;
  }
  BLKVAULT_TRY(hole_to(image.size_bytes));

  std::mutex progress_mu;
  std::atomic<uint64_t> written{0};
  auto put = [&](const ChunkRef& ref, std::span<const uint8_t> data) -> Status {
    BLKVAULT_TRY(sink.write_at(ref.chunk_index * image.chunk_size, data));
    written += data.size();
    if (progress) {
      std::lock_guard g(progress_mu);
      progress(data.size());
    }
    return {};
  };
  // Restores the chunks of one run (contiguous_runs) from one request into
  // `bytes`, a chunk at a time into `data`. From the first that does not
  // open, one read each, so a failure names its own chunk exactly as a single
  // read does.
  auto restore_run = [&](std::span<const size_t> run, ChunkCodec& codec, std::vector<uint8_t>& bytes,
                         std::vector<uint8_t>& data) -> Status {
    auto ref = [&](size_t k) -> const ChunkRef& { return image.chunks[run[k]]; };
    size_t done = 0;
    if (run.size() > 1) {
      const ChunkRef& a = ref(0);
      const ChunkRef& z = ref(run.size() - 1);
      const std::string& pack = image.packs.at(a.pack);
      const uint64_t span_bytes = z.offset + z.length - a.offset;
      const bool read = static_cast<bool>(read_pack_range_into(*impl_->storage, pack, a.offset, span_bytes, bytes));
      for (; read && bytes.size() == span_bytes && done < run.size(); ++done) {
        const ChunkRef& c = ref(done);
        if (c.raw_size != chunk_bytes(image, c.chunk_index)) break;
        if (!open_blob_into(std::span<const uint8_t>(bytes).subspan(c.offset - a.offset, c.length), pack, c.offset,
                            c.id, c.raw_size, impl_->config.chunk_key, codec, data)) {
          break;
        }
        BLKVAULT_TRY(put(c, data));
      }
    }
    for (; done < run.size(); ++done) {
      BLKVAULT_TRY_ASSIGN(auto one, read_chunk(image, ref(done), codec));
      BLKVAULT_TRY(put(ref(done), one));
    }
    return {};
  };
  CodecPool codecs(*impl_);
  std::vector<size_t> order;
  const auto runs = contiguous_runs(image.chunks, order);
  // One run buffer and one chunk buffer per worker, reused from run to run
  // and chunk to chunk (a new buffer per run was zero-filled and faulted in
  // again each time: 13% of a restore's CPU). Allocated here, before any
  // worker reads a run, so no worker's heap holds a lasting buffer above a
  // freed one.
  const size_t workers = std::max<size_t>(threads, 1);
  std::vector<std::vector<uint8_t>> run_buffers(workers), buffers(workers);
  for (auto& b : run_buffers) b.reserve(kRunBytes);
  for (auto& b : buffers) b.reserve(image.chunk_size);
  auto st = parallel_for(runs.size(), threads, cancel, [&](size_t r, size_t worker) -> Status {
    const auto [first, last] = runs[r];
    auto codec = codecs.take();
    Status done = restore_run(std::span<const size_t>(order.data() + first, last - first), *codec,
                              run_buffers[worker], buffers[worker]);
    codecs.give(std::move(codec));
    return done;
  });
  if (!st) return tl::unexpected(std::move(st).error());
  stats.bytes_written = written.load();
  return stats;
}

Result<VerifyReport> Repository::verify(const VerifyOptions& options, const CancelToken* cancel,
                                        const std::function<void(uint64_t)>& progress) {
  const auto clock = [&] { return options.clock_ms ? options.clock_ms() : now_ms(); };
  const int64_t start_ms = clock();
  VerifyReport report;
  struct ChunkRow {
    int64_t rowid;
    ChunkId id;
    std::optional<int64_t> pack;
    uint64_t offset;
    uint32_t length;
    uint32_t raw_size;
  };
  std::vector<ChunkRow> chunks;
  std::map<int64_t, std::pair<std::string, uint64_t>> packs;  // rowid -> name, size
  std::vector<GenerationInfo> gens;
  {
    std::lock_guard guard(impl_->mu);
    auto& db = *impl_->db;
    BLKVAULT_TRY_ASSIGN(auto ic, db.prepare("PRAGMA integrity_check"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, ic.step());
      if (!row) break;
      if (ic.text(0) != "ok") report.problems.push_back("index: " + ic.text(0));
    }
    BLKVAULT_TRY_ASSIGN(gens, impl_->load_generations(options.generation));
    if (options.generation && gens.empty()) {
      return fail(ErrorCode::kNotFound, "generation " + std::to_string(*options.generation) + " does not exist");
    }
    std::erase_if(gens, [](const GenerationInfo& g) {
      return g.state != GenerationState::kComplete && g.state != GenerationState::kPartial;
    });
    report.generations = gens.size();

    // Which chunks to check: those the generation(s) reference.
    // Map rows some remaining generation reads (rows only removed generations
    // read are gc's to drop, not damage).
    std::string sql =
        "SELECT DISTINCT c.id, c.hash, c.pack, c.offset, c.length, c.raw_size FROM chunk_map m "
        "JOIN chunks c ON c.id = m.chunk JOIN generation_devices gd ON gd.device = m.device AND gd.complete = 1 "
        "AND gd.generation >= m.gen_from AND gd.generation < m.gen_to "
        "JOIN generations g ON g.id = gd.generation AND g.state IN ('complete', 'partial')";
    if (options.generation) sql += " WHERE gd.generation = " + std::to_string(*options.generation);
    BLKVAULT_TRY_ASSIGN(auto q, db.prepare(sql));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      ChunkRow c;
      c.rowid = q.int64(0);
      std::copy_n(q.blob(1).begin(), std::min<size_t>(16, q.blob(1).size()), c.id.begin());
      if (!q.is_null(2)) c.pack = q.int64(2);
      c.offset = static_cast<uint64_t>(q.int64(3));
      c.length = static_cast<uint32_t>(q.int64(4));
      c.raw_size = static_cast<uint32_t>(q.int64(5));
      chunks.push_back(c);
    }
    BLKVAULT_TRY_ASSIGN(auto pq, db.prepare("SELECT id, name, size FROM packs"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, pq.step());
      if (!row) break;
      packs[pq.int64(0)] = {pq.text(1), static_cast<uint64_t>(pq.int64(2))};
    }
  }
  std::sort(chunks.begin(), chunks.end(), [](const ChunkRow& a, const ChunkRow& b) {
    return std::tie(a.pack, a.offset) < std::tie(b.pack, b.offset);
  });

  // Manifests: each committed generation has one, and it decodes.
  for (const auto& g : gens) {
    const std::string name = manifest_name(g.id);
    auto bytes = impl_->storage->get(name);
    if (!bytes) {
      report.problems.push_back("generation " + std::to_string(g.id) + ": " + bytes.error().message() +
                                " (its manifest; the index is now the only record of it)");
      continue;
    }
    auto plain = impl_->open_metadata(name, std::move(*bytes));
    if (!plain) {
      report.problems.push_back("generation " + std::to_string(g.id) + ": " + plain.error().message());
      continue;
    }
    auto m = Manifest::decode(*plain, name);
    if (!m) report.problems.push_back("generation " + std::to_string(g.id) + ": " + m.error().message());
  }
  // The index against the manifests: records, chunk maps, kept parents.
  {
    std::lock_guard guard(impl_->mu);
    BLKVAULT_TRY(check_index_against_manifests(*impl_, gens, !options.generation, report.problems));
  }

  // Damaged chunks, by rowid, with why.
  std::map<int64_t, std::string> damaged;
  std::mutex damaged_mu;
  auto mark = [&](const ChunkRow& c, const std::string& why) {
    std::lock_guard g(damaged_mu);
    damaged.emplace(c.rowid, why);
  };

  // The packs in scope, each with its run of chunks (sorted by pack, offset).
  std::vector<PackCandidate> in_scope;
  std::vector<std::pair<size_t, size_t>> runs;  // [begin, end) in chunks, per in_scope entry
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto& c = chunks[i];
    if (!c.pack) {
      mark(c, "chunk " + to_hex(c.id) + " is in no pack");
      continue;
    }
    if (in_scope.empty() || in_scope.back().rowid != *c.pack) {
      const auto& [name, size] = packs[*c.pack];
      in_scope.push_back(PackCandidate{*c.pack, name, size, std::nullopt});
      runs.emplace_back(i, i);
    }
    runs.back().second = i + 1;
  }
  report.packs_in_scope = in_scope.size();
  std::vector<size_t> order(in_scope.size());  // indices into in_scope, in check order
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  bool record = options.data;
  if (options.data) {
    std::lock_guard guard(impl_->mu);
    auto progress = load_pack_progress(*impl_->db);
    if (!progress) {
      // Only progress is lost (every pack counts as never verified), but a
      // table the index cannot read is damage to the index all the same.
      report.problems.push_back("index: the verification progress (table pack_verify) cannot be read: " +
                                progress.error().message() + " (index rebuild starts it over)");
      record = false;
    } else {
      for (auto& p : in_scope) {
        auto it = progress->find(p.name);
        if (it != progress->end()) p.verified_ms = it->second.verified_ms;
      }
    }
  }
  if (options.data) order = select_packs(in_scope, options.select, start_ms);
  report.packs_selected = order.size();
  if (options.data && options.planned) {
    uint64_t planned = 0;
    for (size_t k : order) {
      for (size_t i = runs[k].first; i < runs[k].second; ++i) planned += chunks[i].length;
    }
    options.planned(planned);
  }

  // One pack: present, the size the index says, a trailer that agrees with the
  // index; with data, every chunk read back (`threads` workers). Appends its
  // problems to `problems`; an error only when the check cannot go on.
  std::atomic<uint64_t> bytes_read{0};
  std::mutex progress_mu;
  CodecPool codecs(*impl_);
  // With data, several packs at once (`outer`), each pack's runs on the
  // workers left over (`inner`); one run buffer and one chunk buffer per
  // worker, allocated before any starts (as restore's, above).
  const size_t outer = options.data ? std::max<size_t>(1, std::min(options.threads, order.size())) : 1;
  const size_t inner = std::max<size_t>(1, options.threads / outer);
  std::vector<std::vector<uint8_t>> run_buffers(options.data ? outer * inner : 0), chunk_buffers(run_buffers.size());
  for (auto& b : run_buffers) b.reserve(kRunBytes);
  for (auto& b : chunk_buffers) b.reserve(impl_->config.chunk_size);
  auto check_pack = [&](size_t k, size_t threads, size_t slot, std::vector<std::string>& problems) -> Status {
    const auto& pack = in_scope[k];
    const size_t first = runs[k].first, last = runs[k].second;
    auto actual = impl_->storage->size(pack.name);
    if (!actual) {
      for (size_t i = first; i < last; ++i) {
        mark(chunks[i], "chunk " + to_hex(chunks[i].id) + ": pack " + pack.name + ": " + actual.error().message());
      }
      return {};
    }
    if (*actual != pack.size_bytes) {
      problems.push_back("pack " + pack.name + " has " + std::to_string(*actual) + " bytes, the index says " +
                         std::to_string(pack.size_bytes));
    }
    auto trailer = read_pack_index(*impl_->storage, pack.name);
    if (!trailer) {
      problems.push_back(trailer.error().message());
    } else {
      std::unordered_map<uint64_t, PackEntry> by_offset;
      for (const auto& e : *trailer) by_offset[e.offset] = e;
      for (size_t i = first; i < last; ++i) {
        const auto& c = chunks[i];
        auto it = by_offset.find(c.offset);
        if (it == by_offset.end() || it->second.id != c.id || it->second.length != c.length) {
          problems.push_back("pack " + pack.name + ": its trailer does not list chunk " + to_hex(c.id) +
                             " at offset " + std::to_string(c.offset) + " as the index does");
        }
      }
    }
    if (!options.data) return {};
    // The pack's chunks in runs of neighbours, each read with one request
    // into the worker's buffer and opened a chunk at a time into its other
    // buffer (a new pair of buffers per chunk was faulted in, zero-filled and
    // trimmed again each time: half of verify's time went to the kernel).
    const auto spans = neighbour_runs(first, last, [&](size_t i) {
      return std::tuple(0, chunks[i].offset, uint64_t{chunks[i].length});
    });
    return parallel_for(spans.size(), threads, cancel, [&](size_t r, size_t worker) -> Status {
      const auto [a, z] = spans[r];
      auto& bytes = run_buffers[slot * inner + worker];
      auto& data = chunk_buffers[slot * inner + worker];
      CodecPool::Lease codec(codecs);
      // Chunks the run's read opened; from the first it could not, one read
      // each, so a problem names its chunk as a single read does.
      size_t done = a;
      const uint64_t span_bytes = chunks[z - 1].offset + chunks[z - 1].length - chunks[a].offset;
      if (z - a > 1 &&
          read_pack_range_into(*impl_->storage, pack.name, chunks[a].offset, span_bytes, bytes) &&
          bytes.size() == span_bytes) {
        for (; done < z; ++done) {
          const auto& c = chunks[done];
          const auto blob = std::span<const uint8_t>(bytes).subspan(c.offset - chunks[a].offset, c.length);
          if (!open_blob_into(blob, pack.name, c.offset, c.id, c.raw_size, impl_->config.chunk_key, *codec, data)) {
            break;
          }
        }
      }
      Status st;
      for (size_t i = done; i < z && st; ++i) {
        const auto& c = chunks[i];
        auto one = read_blob(*impl_->storage, pack.name, c.offset, c.length, c.id, c.raw_size,
                             impl_->config.chunk_key, *codec);
        if (!one) {
          if (one.error().code() != ErrorCode::kCorrupt && one.error().code() != ErrorCode::kUnsupported) {
            // The storage failed to read (not the data): the check cannot go on.
            st = tl::unexpected(std::move(one).error());
          } else {
            mark(c, one.error().message());
          }
        }
      }
      if (!st) return st;
      uint64_t read = 0;
      for (size_t i = a; i < z; ++i) read += chunks[i].length;
      bytes_read += read;
      if (progress) {
        std::lock_guard g(progress_mu);
        progress(read);
      }
      return {};
    });
  };

  // Packs in order; with data, several at once (and each pack's chunks on the
  // workers left over), each recorded as it finishes.
  std::vector<std::vector<std::string>> pack_problems(order.size());
  std::vector<char> started(order.size(), 0);
  bool tidied = false;  // guarded by impl_->mu
  bool record_failed = false;  // guarded by impl_->mu: warned once, then no more recording
  BLKVAULT_TRY(parallel_for(order.size(), outer, cancel, [&](size_t n, size_t slot) -> Status {
    if (n > 0 && options.select.budget_ms && clock() >= start_ms + *options.select.budget_ms) return {};
    started[n] = 1;
    const size_t k = order[n];
    BLKVAULT_TRY(check_pack(k, inner, slot, pack_problems[n]));
    if (!record) return {};
    PackProgress result{clock(), true, ""};
    if (!pack_problems[n].empty()) {
      result.ok = false;
      result.problem = pack_problems[n].front();
    } else {
      std::lock_guard g(damaged_mu);
      for (size_t i = runs[k].first; i < runs[k].second && result.ok; ++i) {
        auto it = damaged.find(chunks[i].rowid);
        if (it != damaged.end()) result = PackProgress{result.verified_ms, false, it->second};
      }
    }
    std::lock_guard guard(impl_->mu);
    if (record_failed) return {};
    const bool tidy = !tidied;
    tidied = true;
    // Progress is a convenience (the rolling verify's schedule), the check is
    // the point: an index that cannot take it (read-only, full disk) costs a
    // warning, not the verification.
    if (auto st = record_pack_progress(*impl_->db, in_scope[k].name, result, tidy); !st) {
      record_failed = true;
      impl_->logger().warning("verification progress not recorded in the index " + impl_->index_path() + ": " +
                              st.error().message() + " (the check goes on; the next run re-verifies these packs)");
    }
    return {};
  }));
  report.chunks = 0;
  for (size_t n = 0; n < order.size(); ++n) {
    if (!started[n]) continue;
    report.packs_checked.push_back(in_scope[order[n]].name);
    report.chunks += runs[order[n]].second - runs[order[n]].first;
    for (auto& p : pack_problems[n]) report.problems.push_back(std::move(p));
  }
  report.packs = report.packs_checked.size();
  // Chunks in no pack belong to every run.
  for (const auto& c : chunks) report.chunks += c.pack ? 0 : 1;
  report.bytes_read = bytes_read.load();
  // What each damaged chunk spoils.
  if (!damaged.empty()) {
    std::lock_guard guard(impl_->mu);
    auto& db = *impl_->db;
    BLKVAULT_TRY_ASSIGN(auto q, db.prepare(
                                    "SELECT dv.name, m.chunk_index, m.gen_from, m.gen_to, m.device FROM chunk_map m "
                                    "JOIN devices dv ON dv.id = m.device WHERE m.chunk = ? ORDER BY m.device, m.chunk_index"));
    for (const auto& [rowid, why] : damaged) {
      Damage d;
      d.what = why;
      q.bind(1, rowid);
      for (;;) {
        BLKVAULT_TRY_ASSIGN(bool row, q.step());
        if (!row) break;
        const std::string dev = q.text(0);
        const auto idx = static_cast<uint64_t>(q.int64(1));
        const auto from = static_cast<GenerationId>(q.int64(2));
        const auto to = static_cast<uint64_t>(q.int64(3));
        for (const auto& g : gens) {
          if (g.id < from || g.id >= to) continue;
          const DeviceRecord* rec = g.device(dev);
          if (rec == nullptr || !rec->complete) continue;
          const uint64_t off = idx * impl_->config.chunk_size;
          const uint64_t len = std::min(impl_->config.chunk_size, rec->size_bytes - std::min(rec->size_bytes, off));
          d.affected.push_back(Damage::Range{g.id, dev, off, len});
        }
      }
      q.reset();
      std::sort(d.affected.begin(), d.affected.end(), [](const Damage::Range& a, const Damage::Range& b) {
        return std::tie(a.generation, a.device, a.offset_bytes) < std::tie(b.generation, b.device, b.offset_bytes);
      });
      report.damage.push_back(std::move(d));
    }
  }
  return report;
}

}  // namespace blkvault::repo
