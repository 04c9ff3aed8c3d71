#include "app/pipeline.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "common/direct_read.h"

namespace blkvault::app {
namespace {

// Shared between the reader and the pool: the free buffers, the first error and
// the count of chunks still in flight.
class PipelineState {
 public:
  PipelineState(size_t buffers, size_t buffer_bytes) {
    for (size_t i = 0; i < buffers; ++i) free_.push_back(std::make_unique<AlignedBytes>(buffer_bytes));
  }

  // Blocks until a buffer is free or an error was recorded (then nullptr).
  std::unique_ptr<AlignedBytes> acquire() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !free_.empty() || error_; });
    if (error_) return nullptr;
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void release(std::unique_ptr<AlignedBytes> b) {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(b));
    cv_.notify_all();
  }
  void record(Error e) {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = std::move(e);
    cv_.notify_all();
  }
  bool failed() {
    std::lock_guard lock(mutex_);
    return error_.has_value();
  }
  void chunk_posted() {
    std::lock_guard lock(mutex_);
    ++in_flight_;
  }
  void chunk_done() {
    std::lock_guard lock(mutex_);
    --in_flight_;
    cv_.notify_all();
  }
  std::optional<Error> drain() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
    return error_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<AlignedBytes>> free_;
  std::optional<Error> error_;
  size_t in_flight_ = 0;
};

// A segment buffer shared by the chunks cut from it; the last chunk to finish
// returns it to the free list.
struct Segment {
  PipelineState* state;
  std::unique_ptr<AlignedBytes> buffer;
  std::atomic<size_t> remaining{0};
  void chunk_finished() {
    if (remaining.fetch_sub(1) == 1) state->release(std::move(buffer));
  }
};

}  // namespace

Result<PipelineResult> run_pipeline(boost::asio::thread_pool& pool, const PipelineOptions& options,
                                    std::span<const ByteExtent> extents, const ReadAt& read, const PutChunk& put,
                                    const CancelToken& cancel,
                                    const std::function<void(uint64_t)>& progress) {
  const uint64_t chunk = options.chunk_size;
  const uint64_t segment_bytes = std::max(chunk, PipelineOptions::kSegmentBytes / chunk * chunk);
  PipelineState state(options.threads + 2, segment_bytes);
  PipelineResult result;
  std::atomic<uint64_t> done{0};

  for (const ByteExtent& ext : extents) {
    if (ext.offset % chunk != 0 || ext.offset + ext.length > options.device_size ||
        (ext.length % chunk != 0 && ext.offset + ext.length != options.device_size)) {
      state.record(Error(ErrorCode::kInternal, fmt::format("pipeline: extent {}+{} is not chunk-aligned (chunk {}, device {})",
                                                           ext.offset, ext.length, chunk, options.device_size)));
      break;
    }
    uint64_t pos = ext.offset;
    const uint64_t end = ext.offset + ext.length;
    while (pos < end) {
      if (Status st = cancel.check(); !st) {
        state.record(std::move(st).error());
        break;
      }
      auto buffer = state.acquire();
      if (!buffer) break;
      const uint64_t len = std::min(segment_bytes, end - pos);
      std::span<uint8_t> data(buffer->data(), len);
      if (Status st = read(pos, data); !st) {
        state.record(std::move(st).error());
        state.release(std::move(buffer));
        break;
      }
      result.bytes_read += len;
      auto seg = std::make_shared<Segment>();
      seg->state = &state;
      seg->buffer = std::move(buffer);
      const uint64_t n = (len + chunk - 1) / chunk;
      seg->remaining = n;
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t off = i * chunk;
        const uint64_t clen = std::min(chunk, len - off);
        const uint64_t index = (pos + off) / chunk;
        state.chunk_posted();
        ++result.chunks;
        boost::asio::post(pool, [&, seg, off, clen, index] {
          if (!state.failed()) {
            if (Status st = put(index, std::span<const uint8_t>(seg->buffer->data() + off, clen)); !st) {
              state.record(std::move(st).error());
            } else if (progress) {
              progress(done.fetch_add(clen) + clen);
            }
          }
          seg->chunk_finished();
          state.chunk_done();
        });
      }
      pos += len;
    }
    if (state.failed()) break;
  }
  if (auto err = state.drain()) return fail(std::move(*err));
  return result;
}

}  // namespace blkvault::app
