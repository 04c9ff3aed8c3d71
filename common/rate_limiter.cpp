#include "common/rate_limiter.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

namespace blkvault {
namespace {

class SteadyClock final : public RateClock {
 public:
  double now_s() override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  void sleep_s(double seconds) override {
    if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  }
};

}  // namespace

RateClock& RateClock::steady() {
  static SteadyClock clock;
  return clock;
}

double RateLimiter::burst_for(double rate) {
  if (std::isinf(rate)) return kUnlimited;
  return std::max(kMinBurstBytes, rate * kBurstSeconds);
}

RateLimiter::RateLimiter(double bytes_per_s, RateClock& clock)
    : clock_(clock), rate_(bytes_per_s), tokens_(burst_for(bytes_per_s)), last_s_(clock.now_s()) {}

void RateLimiter::refill_locked(double now) {
  const double burst = burst_for(rate_);
  if (std::isinf(rate_)) {
    tokens_ = burst;
  } else if (now > last_s_) {
    tokens_ = std::min(burst, tokens_ + (now - last_s_) * rate_);
  }
  last_s_ = std::max(last_s_, now);
}

Status RateLimiter::acquire(uint64_t bytes, const CancelToken* cancel) {
  double wait_s = 0;
  {
    std::lock_guard g(mu_);
    bytes_passed_ += bytes;
    if (std::isinf(rate_)) return {};
    const double now = clock_.now_s();
    refill_locked(now);
    tokens_ -= static_cast<double>(bytes);
    if (tokens_ >= 0) return {};
    wait_s = -tokens_ / rate_;
    if (waiters_++ == 0) wait_started_s_ = now;
  }
  // Oversleeping only makes the run slower, never faster than the rate.
  Status result;
  for (double left = wait_s; left > 1e-9;) {
    if (cancel != nullptr && cancel->cancelled()) {
      result = cancel->check();
      break;
    }
    const double slice = std::min(kSleepSliceSeconds, left);
    clock_.sleep_s(slice);
    left -= slice;
  }
  std::lock_guard g(mu_);
  if (--waiters_ == 0) throttled_s_ += std::max(0.0, clock_.now_s() - wait_started_s_);
  return result;
}

void RateLimiter::set_rate(double bytes_per_s) {
  std::lock_guard g(mu_);
  refill_locked(clock_.now_s());
  const bool was_unlimited = std::isinf(rate_);
  rate_ = bytes_per_s;
  tokens_ = was_unlimited ? burst_for(rate_) : std::min(tokens_, burst_for(rate_));
}

double RateLimiter::rate() const {
  std::lock_guard g(mu_);
  return rate_;
}

double RateLimiter::burst() const {
  std::lock_guard g(mu_);
  return burst_for(rate_);
}

double RateLimiter::throttled_seconds() const {
  std::lock_guard g(mu_);
  double t = throttled_s_;
  if (waiters_ > 0) t += std::max(0.0, clock_.now_s() - wait_started_s_);
  return t;
}

uint64_t RateLimiter::bytes_passed() const {
  std::lock_guard g(mu_);
  return bytes_passed_;
}

}  // namespace blkvault
