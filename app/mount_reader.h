// app/mount_reader.h — what `blkvault mount` serves a read from: the images of
// a repository's generations, read chunk by chunk straight from the packs,
// with a cache of decompressed chunks and read-ahead.
//
// A read is answered from the chunks it covers: a hole is zeros, a chunk in
// the cache is copied, any other is read, checked (hash, size) and
// decompressed by Repository::read_chunk, so a damaged chunk is an error
// (kCorrupt naming the generation, device and byte range), never wrong bytes.
// After a read that ends in chunk i, chunks i+1 .. i+kReadAhead are loaded in
// the background (one thread), so sequential readers (cp, dd, a loop device,
// e2fsck) find them cached.
//
// Thread-safety: read() may be called from many threads at once (FUSE's
// multi-threaded loop); images must stay alive while the reader is used.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "repo/repository.h"

namespace blkvault::app {

class MountReader {
 public:
  static constexpr int kReadAhead = 4;  // chunks loaded ahead of a reader

  // `cache_bytes`: decompressed chunks kept (at least a few chunks).
  MountReader(repo::Repository& repository, uint64_t cache_bytes);
  ~MountReader();  // stops the read-ahead thread
  MountReader(const MountReader&) = delete;
  MountReader& operator=(const MountReader&) = delete;

  // Reads up to out.size() bytes at `offset` of `image` (fewer at its end).
  // REQUIRES: `image` outlives every read and read-ahead of it.
  Result<size_t> read(const repo::DeviceImage& image, uint64_t offset, std::span<uint8_t> out);

  uint64_t chunks_loaded() const;  // from the repository (not the cache)

 private:
  using Data = std::shared_ptr<const std::vector<uint8_t>>;
  Result<Data> chunk(const repo::DeviceImage& image, const repo::ChunkRef& ref);
  Result<Data> load(const repo::DeviceImage& image, const repo::ChunkRef& ref);
  void ahead(const repo::DeviceImage& image, uint64_t after_index);
  void prefetch_loop();

  repo::Repository& repo_;
  uint64_t cache_bytes_;

  mutable std::mutex mu_;  // guards everything below
  std::list<repo::ChunkId> lru_;  // front: most recent
  struct Entry {
    Data data;
    std::list<repo::ChunkId>::iterator pos;
  };
  std::map<repo::ChunkId, Entry> cache_;
  uint64_t cached_bytes_ = 0;
  uint64_t loaded_ = 0;
  std::vector<std::unique_ptr<repo::ChunkCodec>> codecs_;  // free codecs
  std::deque<std::pair<const repo::DeviceImage*, size_t>> queue_;  // read-ahead: image, position in chunks
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread prefetcher_;
};

}  // namespace blkvault::app
