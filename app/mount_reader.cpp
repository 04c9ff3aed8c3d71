#include "app/mount_reader.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace blkvault::app {

MountReader::MountReader(repo::Repository& repository, uint64_t cache_bytes, LoadHook before_load)
    : repo_(repository),
      cache_bytes_(std::max<uint64_t>(cache_bytes, kMinCacheChunks * repository.config().chunk_size)),
      before_load_(std::move(before_load)) {
  stats_.cache_limit_bytes = cache_bytes_;
  prefetcher_ = std::thread([this] { prefetch_loop(); });
}

MountReader::~MountReader() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  prefetcher_.join();
}

MountReader::Stats MountReader::stats() const {
  std::lock_guard g(mu_);
  return stats_;
}

// Reads one chunk from the repository; the caller has registered the load in loading_.
Result<MountReader::Data> MountReader::load(const repo::DeviceImage& image, const repo::ChunkRef& ref) {
  std::unique_ptr<repo::ChunkCodec> codec;
  {
    std::lock_guard g(mu_);
    if (!codecs_.empty()) {
      codec = std::move(codecs_.back());
      codecs_.pop_back();
    }
  }
  if (!codec) codec = std::make_unique<repo::ChunkCodec>(repo_.config().compression_level, repo_.keys());
  if (before_load_) before_load_(ref);
  auto bytes = repo_.read_chunk(image, ref, *codec);
  std::lock_guard g(mu_);
  codecs_.push_back(std::move(codec));
  ++stats_.chunks_loaded;
  if (!bytes) return fail(std::move(bytes).error());
  return std::make_shared<const std::vector<uint8_t>>(std::move(*bytes));
}

void MountReader::insert_locked(const repo::ChunkId& id, const Data& data) {
  if (cache_.count(id) != 0) return;
  lru_.push_front(id);
  cache_.emplace(id, Entry{data, lru_.begin()});
  stats_.cached_bytes += data->size();
  while (stats_.cached_bytes > cache_bytes_ && !lru_.empty()) {
    auto it = cache_.find(lru_.back());
    stats_.cached_bytes -= it->second.data->size();
    cache_.erase(it);
    lru_.pop_back();
  }
  stats_.peak_cached_bytes = std::max(stats_.peak_cached_bytes, stats_.cached_bytes);
}

Result<MountReader::Data> MountReader::chunk(const repo::DeviceImage& image, const repo::ChunkRef& ref) {
  std::shared_ptr<Pending> p;
  {
    std::unique_lock g(mu_);
    auto it = cache_.find(ref.id);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.pos);
      return it->second.data;
    }
    auto l = loading_.find(ref.id);
    if (l != loading_.end()) {  // single flight: wait for the load under way
      p = l->second;
      loaded_.wait(g, [&] { return p->done; });
      return p->result;
    }
    p = std::make_shared<Pending>();
    loading_.emplace(ref.id, p);
  }
  return complete_load(image, ref, p);
}

Result<MountReader::Data> MountReader::complete_load(const repo::DeviceImage& image, const repo::ChunkRef& ref,
                                                     const std::shared_ptr<Pending>& p) {
  auto r = load(image, ref);
  {
    std::lock_guard g(mu_);
    if (r) insert_locked(ref.id, *r);
    p->result = r;
    p->done = true;
    loading_.erase(ref.id);
  }
  loaded_.notify_all();
  return r;
}

// True when [offset, end) continues a remembered stream of `image`; records `end`.
bool MountReader::sequential_locked(const repo::DeviceImage& image, uint64_t offset, uint64_t end) {
  auto& ends = stream_ends_[&image];
  auto it = std::find(ends.begin(), ends.end(), offset);
  const bool seq = it != ends.end();
  if (it != ends.end()) ends.erase(it);
  ends.push_back(end);
  if (ends.size() > kStreamsPerImage) ends.pop_front();
  return seq;
}

Result<size_t> MountReader::read(const repo::DeviceImage& image, uint64_t offset, std::span<uint8_t> out) {
  if (offset >= image.size_bytes) return size_t{0};
  const uint64_t n = std::min<uint64_t>(out.size(), image.size_bytes - offset);
  const uint64_t cs = image.chunk_size;
  bool seq = false;
  {
    std::lock_guard g(mu_);
    seq = sequential_locked(image, offset, offset + n);
  }
  uint64_t done = 0;
  auto it = std::lower_bound(image.chunks.begin(), image.chunks.end(), offset / cs,
                             [](const repo::ChunkRef& c, uint64_t idx) { return c.chunk_index < idx; });
  uint64_t last_index = 0;
  while (done < n) {
    const uint64_t at = offset + done;
    const uint64_t idx = at / cs;
    const uint64_t in = at - idx * cs;
    const uint64_t len = std::min(n - done, cs - in);
    last_index = idx;
    while (it != image.chunks.end() && it->chunk_index < idx) ++it;
    if (it == image.chunks.end() || it->chunk_index != idx) {
      std::memset(out.data() + done, 0, len);  // a hole
    } else {
      auto data = chunk(image, *it);
      if (!data) {
        return fail(std::move(data).error().wrap(fmt::format("generation {} {} bytes {}..{}", image.generation,
                                                             image.device, idx * cs,
                                                             idx * cs + std::min(cs, image.size_bytes - idx * cs))));
      }
      if (in + len > (*data)->size()) return fail(ErrorCode::kCorrupt, "a chunk shorter than its map entry");
      std::memcpy(out.data() + done, (*data)->data() + in, len);
    }
    done += len;
  }
  if (seq) ahead(image, last_index);
  return static_cast<size_t>(n);
}

void MountReader::ahead(const repo::DeviceImage& image, uint64_t after_index) {
  auto it = std::upper_bound(image.chunks.begin(), image.chunks.end(), after_index,
                             [](uint64_t idx, const repo::ChunkRef& c) { return idx < c.chunk_index; });
  std::lock_guard g(mu_);
  for (int k = 0; k < kReadAhead && it != image.chunks.end(); ++k, ++it) {
    if (it->chunk_index > after_index + kReadAhead) break;
    if (cache_.count(it->id) != 0 || loading_.count(it->id) != 0) continue;
    const auto pos = static_cast<size_t>(it - image.chunks.begin());
    if (std::find(queue_.begin(), queue_.end(), std::make_pair(&image, pos)) != queue_.end()) continue;
    if (queue_.size() >= 64) break;
    queue_.emplace_back(&image, pos);
    ++stats_.read_ahead_queued;
  }
  wake_.notify_one();
}

void MountReader::prefetch_loop() {
  for (;;) {
    std::pair<const repo::DeviceImage*, size_t> job;
    auto pending = std::make_shared<Pending>();
    {
      std::unique_lock g(mu_);
      wake_.wait(g, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = queue_.front();
      queue_.pop_front();
      const auto& id = job.first->chunks[job.second].id;
      if (cache_.count(id) != 0 || loading_.count(id) != 0) continue;
      // Registered before the lock is released, so a read (or read-ahead)
      // meanwhile waits for this load instead of queueing the chunk again.
      loading_.emplace(id, pending);
    }
    // A failure here is reported by the read that needs the chunk.
    (void)complete_load(*job.first, job.first->chunks[job.second], pending);
  }
}

}  // namespace blkvault::app
