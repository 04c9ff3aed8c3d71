// app/mount_reader.h — what `blkvault mount` serves a read from: the images of
// a repository's generations, read chunk by chunk straight from the packs,
// with a bounded cache of decompressed chunks and read-ahead for sequential
// readers.
//
// A read is answered from the chunks it covers: a hole is zeros, a chunk in
// the cache is copied, any other is read, checked (hash, size) and
// decompressed by Repository::read_chunk, so a damaged chunk is an error
// (kCorrupt naming the generation, device and byte range), never wrong bytes.
//
// Memory: the cache holds at most `cache_bytes` of decompressed chunks (least
// recently used go first), besides the chunks being copied out at the moment.
// Loads are single-flight: a chunk being loaded (by a reader or the
// read-ahead) is waited for, never loaded a second time.
//
// Read-ahead: only a sequential read — one that starts where an earlier read
// of the same image ended (a few such streams are remembered per image) —
// queues the next kReadAhead chunks for the background thread, so cp, dd, a
// loop device or e2fsck find them cached, while random reads (a filesystem's
// metadata, a database) cost only the chunks they touch.
//
// Thread-safety: read() may be called from many threads at once (FUSE's
// multi-threaded loop); images must stay alive while the reader is used.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "common/error.h"
#include "repo/repository.h"

namespace blkvault::app {

class MountReader {
 public:
  static constexpr int kReadAhead = 4;         // chunks loaded ahead of a sequential reader
  static constexpr int kMinCacheChunks = 4;    // the cache is never smaller than this
  static constexpr size_t kStreamsPerImage = 8;  // sequential streams remembered per image
  static constexpr uint64_t kDefaultCacheBytes = 64ull << 20;

  // Called before each load from the repository, outside the reader's lock
  // (tests use it to slow a load down). May be empty.
  using LoadHook = std::function<void(const repo::ChunkRef&)>;

  // `cache_bytes`: decompressed chunks kept, raised to kMinCacheChunks chunks.
  MountReader(repo::Repository& repository, uint64_t cache_bytes, LoadHook before_load = {});
  ~MountReader();  // stops the read-ahead thread
  MountReader(const MountReader&) = delete;
  MountReader& operator=(const MountReader&) = delete;

  // Reads up to out.size() bytes at `offset` of `image` (fewer at its end).
  // REQUIRES: `image` outlives every read and read-ahead of it.
  Result<size_t> read(const repo::DeviceImage& image, uint64_t offset, std::span<uint8_t> out);

  struct Stats {
    uint64_t chunks_loaded = 0;        // loads from the repository (readers and read-ahead)
    uint64_t read_ahead_queued = 0;    // chunks handed to the read-ahead thread
    uint64_t cached_bytes = 0;         // now
    uint64_t peak_cached_bytes = 0;    // the most the cache ever held
    uint64_t cache_limit_bytes = 0;    // the bound in force
  };
  Stats stats() const;
  uint64_t chunks_loaded() const { return stats().chunks_loaded; }

 private:
  using Data = std::shared_ptr<const std::vector<uint8_t>>;
  struct Pending {  // a load in flight; waiters sleep on loaded_
    bool done = false;
    Result<Data> result = Data{};
  };
  struct Entry {
    Data data;
    std::list<repo::ChunkId>::iterator pos;
  };

  Result<Data> chunk(const repo::DeviceImage& image, const repo::ChunkRef& ref);
  Result<Data> load(const repo::DeviceImage& image, const repo::ChunkRef& ref);
  // Loads `ref` for `pending`, which the caller registered in loading_ under
  // mu_, then caches the chunk and wakes the waiters.
  Result<Data> complete_load(const repo::DeviceImage& image, const repo::ChunkRef& ref,
                             const std::shared_ptr<Pending>& pending);
  void insert_locked(const repo::ChunkId& id, const Data& data);
  bool sequential_locked(const repo::DeviceImage& image, uint64_t offset, uint64_t end);
  void ahead(const repo::DeviceImage& image, uint64_t after_index);
  void prefetch_loop();

  repo::Repository& repo_;
  const uint64_t cache_bytes_;
  const LoadHook before_load_;

  mutable std::mutex mu_;  // guards everything below
  std::list<repo::ChunkId> lru_;  // front: most recent
  std::map<repo::ChunkId, Entry> cache_;
  std::map<repo::ChunkId, std::shared_ptr<Pending>> loading_;
  std::condition_variable loaded_;
  std::map<const repo::DeviceImage*, std::deque<uint64_t>> stream_ends_;  // newest last
  Stats stats_;
  std::vector<std::unique_ptr<repo::ChunkCodec>> codecs_;  // free codecs
  std::deque<std::pair<const repo::DeviceImage*, size_t>> queue_;  // read-ahead: image, position in chunks
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread prefetcher_;
};

}  // namespace blkvault::app
