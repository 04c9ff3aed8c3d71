// Reading generations back: chunk reads, restore, and verify.
#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "repo/index_check.h"
#include "repo/pack.h"
#include "repo/repository_impl.h"

namespace blkvault::repo {
namespace {

// Runs `work(i)` for i in [0, n) on `threads` threads; stops at the first
// error or cancellation and returns it.
Status parallel_for(size_t n, size_t threads, const CancelToken* cancel, const std::function<Status(size_t)>& work) {
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::optional<Error> first;
  auto body = [&] {
    for (;;) {
      if (stop.load()) return;
      if (cancel != nullptr && cancel->cancelled()) {
        std::lock_guard g(mu);
        if (!first) first = Error(ErrorCode::kCancelled, "interrupted");
        stop = true;
        return;
      }
      const size_t i = next++;
      if (i >= n) return;
      auto st = work(i);
      if (!st) {
        std::lock_guard g(mu);
        if (!first) first = std::move(st).error();
        stop = true;
        return;
      }
    }
  };
  threads = std::max<size_t>(1, std::min(threads, n));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(body);
  body();
  for (auto& t : pool) t.join();
  if (first) return tl::unexpected(std::move(*first));
  return {};
}

// Reads and opens one blob; checks it is `id` and `raw_size` bytes.
Result<std::vector<uint8_t>> read_blob(Storage& storage, const std::string& pack, uint64_t offset, uint32_t length,
                                       const ChunkId& id, uint32_t raw_size, const ChunkKey& key, ChunkCodec& codec) {
  const std::string where = pack + " at offset " + std::to_string(offset);
  if (length < BlobHeader::kSize) {
    return fail(ErrorCode::kCorrupt, "chunk " + to_hex(id) + " in " + where + ": the index gives a bad length");
  }
  auto got = storage.get_range(pack, offset, length);
  if (!got && got.error().code() == ErrorCode::kNotFound) {
    // A pack the index references is gone: damage (exit 3), not a wrong name.
    return fail(std::move(got).error().with_code(ErrorCode::kCorrupt));
  }
  BLKVAULT_TRY_ASSIGN(auto bytes, std::move(got));
  BLKVAULT_TRY_ASSIGN(auto header, BlobHeader::decode(std::span(bytes).first(BlobHeader::kSize), where));
  if (header.id != id) {
    return fail(ErrorCode::kCorrupt, "chunk " + to_hex(id) + " in " + where + ": the blob there is chunk " +
                                         to_hex(header.id));
  }
  BLKVAULT_TRY_ASSIGN(auto data, codec.open(header, std::span(bytes).subspan(BlobHeader::kSize), key, where));
  if (data.size() != raw_size) {
    return fail(ErrorCode::kCorrupt, "chunk " + to_hex(id) + " in " + where + ": " + std::to_string(data.size()) +
                                         " bytes, the index says " + std::to_string(raw_size));
  }
  return data;
}

}  // namespace

Result<std::vector<uint8_t>> Repository::read_chunk(const DeviceImage& image, const ChunkRef& ref, ChunkCodec& codec) {
  const uint64_t offset = ref.chunk_index * image.chunk_size;
  const uint64_t expect = std::min(image.chunk_size, image.size_bytes - std::min(image.size_bytes, offset));
  if (ref.raw_size != expect) {
    return fail(ErrorCode::kCorrupt, "chunk " + to_hex(ref.id) + " at offset " + std::to_string(offset) + " of " +
                                         image.device + " has " + std::to_string(ref.raw_size) + " bytes, expected " +
                                         std::to_string(expect));
  }
  auto data = read_blob(*impl_->storage, image.packs.at(ref.pack), ref.offset, ref.length, ref.id, ref.raw_size,
                        impl_->config.chunk_key, codec);
  if (!data) {
    return fail(std::move(data.error())
                    .wrap("reading offset " + std::to_string(offset) + " of " + image.device + " in generation " +
                          std::to_string(image.generation)));
  }
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
  CodecPool codecs(*impl_);
  auto st = parallel_for(image.chunks.size(), threads, cancel, [&](size_t i) -> Status {
    auto codec = codecs.take();
    const auto& ref = image.chunks[i];
    auto data = read_chunk(image, ref, *codec);
    codecs.give(std::move(codec));
    if (!data) return tl::unexpected(std::move(data).error());
    BLKVAULT_TRY(sink.write_at(ref.chunk_index * image.chunk_size, *data));
    written += data->size();
    if (progress) {
      std::lock_guard g(progress_mu);
      progress(data->size());
    }
    return {};
  });
  if (!st) return tl::unexpected(std::move(st).error());
  stats.bytes_written = written.load();
  return stats;
}

Result<VerifyReport> Repository::verify(const VerifyOptions& options, const CancelToken* cancel,
                                        const std::function<void(uint64_t)>& progress) {
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
  report.chunks = chunks.size();

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

  // Packs: present, the size the index says, a trailer that agrees with the index.
  std::set<int64_t> used_packs;
  for (const auto& c : chunks) {
    if (!c.pack) {
      mark(c, "chunk " + to_hex(c.id) + " is in no pack");
    } else {
      used_packs.insert(*c.pack);
    }
  }
  std::set<int64_t> bad_packs;
  for (int64_t p : used_packs) {
    const auto& [name, size] = packs[p];
    ++report.packs;
    auto actual = impl_->storage->size(name);
    if (!actual) {
      bad_packs.insert(p);
      for (const auto& c : chunks) {
        if (c.pack == p) mark(c, "chunk " + to_hex(c.id) + ": pack " + name + ": " + actual.error().message());
      }
      continue;
    }
    if (*actual != size) {
      report.problems.push_back("pack " + name + " has " + std::to_string(*actual) + " bytes, the index says " +
                                std::to_string(size));
    }
    auto trailer = read_pack_index(*impl_->storage, name);
    if (!trailer) {
      report.problems.push_back(trailer.error().message());
      continue;
    }
    std::unordered_map<uint64_t, PackEntry> by_offset;
    for (const auto& e : *trailer) by_offset[e.offset] = e;
    for (const auto& c : chunks) {
      if (c.pack != p) continue;
      auto it = by_offset.find(c.offset);
      if (it == by_offset.end() || it->second.id != c.id || it->second.length != c.length) {
        report.problems.push_back("pack " + name + ": its trailer does not list chunk " + to_hex(c.id) +
                                  " at offset " + std::to_string(c.offset) + " as the index does");
      }
    }
  }

  if (options.data) {
    CodecPool codecs(*impl_);
    std::atomic<uint64_t> bytes{0};
    std::mutex progress_mu;
    BLKVAULT_TRY(parallel_for(chunks.size(), options.threads, cancel, [&](size_t i) -> Status {
      const auto& c = chunks[i];
      if (!c.pack || bad_packs.count(*c.pack)) return {};
      auto codec = codecs.take();
      auto data = read_blob(*impl_->storage, packs[*c.pack].first, c.offset, c.length, c.id, c.raw_size,
                            impl_->config.chunk_key, *codec);
      codecs.give(std::move(codec));
      if (!data) {
        if (data.error().code() != ErrorCode::kCorrupt && data.error().code() != ErrorCode::kUnsupported) {
          // The storage failed to read (not the data): the check cannot go on.
          return tl::unexpected(std::move(data).error());
        }
        mark(c, data.error().message());
      }
      bytes += c.length;
      if (progress) {
        std::lock_guard g(progress_mu);
        progress(c.length);
      }
      return {};
    }));
    report.bytes_read = bytes.load();
  }

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
