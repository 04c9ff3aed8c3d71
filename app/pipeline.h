// app/pipeline.h — the backup data path for one device: read the changed extents
// of a snapshot image in device order and hand every chunk to a consumer on a
// thread pool.
//
// Shape: the calling thread is the only reader. It issues large sequential reads
// (segments of up to kSegmentBytes, whole chunks) in device order, and posts each
// chunk of a segment to the Boost.Asio pool, where `put` hashes, deduplicates and
// compresses it. Memory is bounded by a fixed set of segment buffers
// (threads + 2): the reader waits for a free buffer, so resident memory stays flat
// whatever the device size. The buffers are page-aligned, so an image reader can
// read them with O_DIRECT (common/direct_read.h).
//
// Errors: the first failure (a read, a put, or cancellation) stops new reads;
// chunks already posted finish; that first error is returned.
// Thread-safety: `put` and `progress` are called from pool threads concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include <boost/asio/thread_pool.hpp>

#include "common/cancel.h"
#include "common/error.h"

namespace blkvault::app {

struct ByteExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Reads `data.size()` bytes at `offset` of the source (a snapshot image).
using ReadAt = std::function<Status(uint64_t offset, std::span<uint8_t> data)>;
// Consumes chunk `chunk_index` (its bytes: chunk_size, or less for the device's last chunk).
using PutChunk = std::function<Status(uint64_t chunk_index, std::span<const uint8_t> data)>;

struct PipelineOptions {
  uint64_t chunk_size = 1 << 20;
  uint64_t device_size = 0;
  size_t threads = 2;  // pool size, for sizing the buffer set
  static constexpr uint64_t kSegmentBytes = 8 << 20;
};

struct PipelineResult {
  uint64_t bytes_read = 0;
  uint64_t chunks = 0;
};

// REQUIRES: extents sorted, non-overlapping, chunk-aligned at their start, and
// each either chunk-aligned at its end or ending at device_size.
Result<PipelineResult> run_pipeline(boost::asio::thread_pool& pool, const PipelineOptions& options,
                                    std::span<const ByteExtent> extents, const ReadAt& read, const PutChunk& put,
                                    const CancelToken& cancel,
                                    const std::function<void(uint64_t bytes_done)>& progress);

}  // namespace blkvault::app
