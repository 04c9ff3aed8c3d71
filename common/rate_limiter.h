// common/rate_limiter.h — a token bucket shared by every thread that moves
// bytes through one limit: the snapshot reads of a backup (app/io_throttle.h),
// the bytes sent to an object store (repo/s3_client.h).
//
// Tokens are bytes. The bucket fills at rate() bytes a second up to burst()
// bytes. acquire(n) takes n tokens at once, letting the balance go below zero,
// and then sleeps until the debt it created is paid back. So a request larger
// than the burst still passes (after waiting for its remainder), callers on
// several threads share the rate instead of each getting it, and over any
// interval of T seconds at most burst() + rate() * T bytes are let through.
// That bound is the contract; tests check it exactly with a fake clock.
//
// The clock is injected (RateClock) so tests run without sleeping; the default
// is std::chrono::steady_clock. A rate of +infinity means "no limit": acquire()
// returns at once (and an adaptive caller may switch between the two).
//
// throttled_seconds() is wall time during which at least one caller was
// waiting: the time the limit cost, not the sum over parallel callers.
// Thread-safety: every member is thread-safe; acquire() blocks only its caller.
#pragma once

#include <cstdint>
#include <limits>
#include <mutex>

#include "common/cancel.h"
#include "common/error.h"

namespace blkvault {

class RateClock {
 public:
  virtual ~RateClock() = default;
  virtual double now_s() = 0;  // monotonic seconds from any origin
  virtual void sleep_s(double seconds) = 0;
  // steady_clock and std::this_thread::sleep_for. Lives for the process.
  static RateClock& steady();
};

class RateLimiter {
 public:
  static constexpr double kUnlimited = std::numeric_limits<double>::infinity();
  // The burst is this long at the current rate, and never less than kMinBurstBytes.
  static constexpr double kBurstSeconds = 0.05;
  static constexpr double kMinBurstBytes = 64 * 1024;
  // A sleep is cut into slices this long so cancellation is seen promptly.
  static constexpr double kSleepSliceSeconds = 0.1;

  // REQUIRES: bytes_per_s > 0 (kUnlimited allowed). `clock` must outlive this.
  // The bucket starts full.
  explicit RateLimiter(double bytes_per_s, RateClock& clock = RateClock::steady());
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes `bytes` tokens and sleeps until they are paid for. Returns
  // kCancelled ("interrupted") when `cancel` is requested during the sleep;
  // the tokens stay taken.
  Status acquire(uint64_t bytes, const CancelToken* cancel = nullptr);

  // Changes the rate from now on (the tokens gathered so far are kept, capped
  // at the new burst). REQUIRES: bytes_per_s > 0 (kUnlimited allowed).
  void set_rate(double bytes_per_s);
  double rate() const;
  double burst() const;
  double throttled_seconds() const;
  uint64_t bytes_passed() const;  // the sum of every acquire()

 private:
  void refill_locked(double now);
  static double burst_for(double rate);

  RateClock& clock_;
  mutable std::mutex mu_;
  double rate_;
  double tokens_;  // may be negative: the debt of callers still sleeping
  double last_s_;
  int waiters_ = 0;
  double wait_started_s_ = 0;  // when waiters_ went from 0 to 1
  double throttled_s_ = 0;     // closed waiting intervals
  uint64_t bytes_passed_ = 0;
};

}  // namespace blkvault
