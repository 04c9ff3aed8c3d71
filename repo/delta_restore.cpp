// Repository::restore_delta (repo/delta_restore.h).
#include "repo/delta_restore.h"

#include <algorithm>
#include <atomic>
#include <mutex>

#include "repo/index_check.h"
#include "repo/parallel.h"
#include "repo/repository_impl.h"

namespace blkvault::repo {
namespace {

// For each chunk index below `count`: does it overlap one of `ranges`?
std::vector<bool> chunks_touched(const std::vector<ByteRange>& ranges, uint64_t chunk_size, uint64_t count) {
  std::vector<bool> out(count, false);
  for (const auto& r : ranges) {
    if (r.length_bytes == 0) continue;
    const uint64_t first = r.offset_bytes / chunk_size;
    const uint64_t last = std::min(count, (r.offset_bytes + r.length_bytes - 1) / chunk_size + 1);
    for (uint64_t c = first; c < last; ++c) out[c] = true;
  }
  return out;
}

}  // namespace

Result<DeltaStats> Repository::restore_delta(const DeviceImage& image, RestoreSource& current, RestoreSink& sink,
                                             const DeltaOptions& options, const CancelToken* cancel,
                                             const std::function<void(uint64_t)>& progress) {
  // A value flipped inside the index must not become wrong bytes.
  BLKVAULT_TRY(check_image_against_manifests(*impl_, image));
  const uint64_t cs = image.chunk_size;
  const uint64_t count = (image.size_bytes + cs - 1) / cs;
  // chunk index -> position in image.chunks, or -1 for a hole.
  std::vector<int64_t> ref_of(count, -1);
  for (size_t i = 0; i < image.chunks.size(); ++i) ref_of.at(image.chunks[i].chunk_index) = static_cast<int64_t>(i);
  std::vector<bool> compare(count, true);
  if (options.compare_only) compare = chunks_touched(*options.compare_only, cs, count);

  std::atomic<uint64_t> compared{0}, skipped{0}, written{0}, zeroed{0}, chunks_written{0};
  std::mutex mu;  // progress
  CodecPool codecs(*impl_);
  const ChunkKey& key = impl_->config.chunk_key;

  auto one = [&](uint64_t idx, std::vector<uint8_t>& buf) -> Status {
    const uint64_t off = idx * cs;
    const uint64_t len = std::min(cs, image.size_bytes - off);
    if (!compare[idx]) {
      skipped += len;
      return {};
    }
    const int64_t r = ref_of[idx];
    // A hole of the target reads as zeros: nothing to read or hash. It
    // differs from any chunk the image stores (those are never all zeros).
    const bool hole = current.reads_as_zeros(off, len);
    if (!hole) {
      buf.resize(len);
      BLKVAULT_TRY(current.read_at(off, buf));
    }
    compared += len;
    if (r < 0) {
      if (hole || is_all_zero(buf)) return {};
      BLKVAULT_TRY(sink.zero(off, len));
      zeroed += len;
      ++chunks_written;
      return {};
    }
    const ChunkRef& ref = image.chunks[static_cast<size_t>(r)];
    if (!hole && chunk_id(key, buf) == ref.id) return {};
    auto codec = codecs.take();
    auto data = read_chunk(image, ref, *codec);
    codecs.give(std::move(codec));
    if (!data) return tl::unexpected(std::move(data).error());
    BLKVAULT_TRY(sink.write_at(off, *data));
    written += len;
    ++chunks_written;
    return {};
  };
  const size_t threads = parallel_workers(count, options.threads);
  std::vector<std::vector<uint8_t>> bufs(threads);  // one read buffer per worker
  BLKVAULT_TRY(parallel_for(count, threads, cancel, [&](size_t idx, size_t worker) -> Status {
    BLKVAULT_TRY(one(idx, bufs[worker]));
    if (progress) {
      std::lock_guard g(mu);
      progress(std::min(cs, image.size_bytes - idx * cs));
    }
    return {};
  }));
  DeltaStats s;
  s.bytes_compared = compared.load();
  s.bytes_skipped = skipped.load();
  s.bytes_written = written.load();
  s.bytes_zeroed = zeroed.load();
  s.chunks_written = chunks_written.load();
  return s;
}

}  // namespace blkvault::repo
