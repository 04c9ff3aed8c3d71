#include "app/mount_reader.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace blkvault::app {

MountReader::MountReader(repo::Repository& repository, uint64_t cache_bytes)
    : repo_(repository), cache_bytes_(std::max<uint64_t>(cache_bytes, 8 * repository.config().chunk_size)) {
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

uint64_t MountReader::chunks_loaded() const {
  std::lock_guard g(mu_);
  return loaded_;
}

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
  auto bytes = repo_.read_chunk(image, ref, *codec);
  std::lock_guard g(mu_);
  codecs_.push_back(std::move(codec));
  if (!bytes) return fail(std::move(bytes).error());
  ++loaded_;
  auto data = std::make_shared<const std::vector<uint8_t>>(std::move(*bytes));
  if (cache_.count(ref.id) == 0) {
    lru_.push_front(ref.id);
    cache_.emplace(ref.id, Entry{data, lru_.begin()});
    cached_bytes_ += data->size();
    while (cached_bytes_ > cache_bytes_ && !lru_.empty()) {
      auto it = cache_.find(lru_.back());
      cached_bytes_ -= it->second.data->size();
      cache_.erase(it);
      lru_.pop_back();
    }
  }
  return data;
}

Result<MountReader::Data> MountReader::chunk(const repo::DeviceImage& image, const repo::ChunkRef& ref) {
  {
    std::lock_guard g(mu_);
    auto it = cache_.find(ref.id);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.pos);
      return it->second.data;
    }
  }
  return load(image, ref);
}

Result<size_t> MountReader::read(const repo::DeviceImage& image, uint64_t offset, std::span<uint8_t> out) {
  if (offset >= image.size_bytes) return size_t{0};
  const uint64_t n = std::min<uint64_t>(out.size(), image.size_bytes - offset);
  const uint64_t cs = image.chunk_size;
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
  ahead(image, last_index);
  return static_cast<size_t>(n);
}

void MountReader::ahead(const repo::DeviceImage& image, uint64_t after_index) {
  auto it = std::upper_bound(image.chunks.begin(), image.chunks.end(), after_index,
                             [](uint64_t idx, const repo::ChunkRef& c) { return idx < c.chunk_index; });
  std::lock_guard g(mu_);
  for (int k = 0; k < kReadAhead && it != image.chunks.end(); ++k, ++it) {
    if (it->chunk_index > after_index + kReadAhead) break;
    if (cache_.count(it->id) != 0) continue;
    if (queue_.size() >= 64) break;
    queue_.emplace_back(&image, static_cast<size_t>(it - image.chunks.begin()));
  }
  wake_.notify_one();
}

void MountReader::prefetch_loop() {
  for (;;) {
    std::pair<const repo::DeviceImage*, size_t> job;
    {
      std::unique_lock g(mu_);
      wake_.wait(g, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = queue_.front();
      queue_.pop_front();
      if (cache_.count(job.first->chunks[job.second].id) != 0) continue;
    }
    // A failure here is reported by the read that needs the chunk.
    (void)load(*job.first, job.first->chunks[job.second]);
  }
}

}  // namespace blkvault::app
