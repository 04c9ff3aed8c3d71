// common/cancel.h — cooperative cancellation.
//
// app/ owns one CancelToken; its SIGINT/SIGTERM handler calls request() (which is
// async-signal-safe: a lock-free atomic store). Long-running library code polls
// cancelled() at safe points and returns ErrorCode::kCancelled; RAII objects then
// release snapshots, locks and temporary files on the way out.
// Thread-safety: fully thread-safe.
#pragma once

#include <atomic>

#include "common/error.h"

namespace blkvault {

class CancelToken {
 public:
  void request(int signal_number = 0) noexcept {
    signal_.store(signal_number, std::memory_order_relaxed);
    cancelled_.store(true, std::memory_order_release);
  }
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
  int signal_number() const noexcept { return signal_.load(std::memory_order_relaxed); }
  Status check() const {
    if (cancelled()) return fail(ErrorCode::kCancelled, "interrupted");
    return {};
  }

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<int> signal_{0};
  static_assert(std::atomic<bool>::is_always_lock_free);
};

}  // namespace blkvault
