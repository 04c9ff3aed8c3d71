// repo/parallel.h — the repository's one worker loop: run `work` over [0, n)
// on a few threads, stop at the first error or at cancellation.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>

#include "common/cancel.h"
#include "common/error.h"

namespace blkvault::repo {

// Runs work(i, worker) for every i in [0, n), each exactly once unless it stops
// early, on min(threads, n) threads (at least one; the caller's thread is
// worker 0, so `worker` < that count and indexes per-thread state). The first
// error stops the others before their next item and is returned; a
// cancellation seen before an item is returned as kCancelled with
// `cancelled_message`. Items already started finish.
Status parallel_for(size_t n, size_t threads, const CancelToken* cancel,
                    const std::function<Status(size_t i, size_t worker)>& work,
                    const std::string& cancelled_message = "interrupted");

// How many threads parallel_for(n, threads, ...) runs.
inline size_t parallel_workers(size_t n, size_t threads) {
  return std::max<size_t>(1, std::min(threads, n));
}

}  // namespace blkvault::repo
