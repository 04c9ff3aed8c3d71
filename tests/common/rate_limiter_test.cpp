// RateLimiter: the token bucket's exact timing against a fake clock (sleeping
// advances it), and the shared rate across real threads.
#include "common/rate_limiter.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace blkvault {
namespace {

class FakeClock final : public RateClock {
 public:
  double now_s() override { return now; }
  void sleep_s(double seconds) override {
    now += seconds;
    slept += seconds;
    ++sleeps;
  }
  double now = 100;
  double slept = 0;
  int sleeps = 0;
};

constexpr double kMB = 1e6;

TEST(RateLimiter, BurstPassesAtOnceThenEachByteWaitsItsShare) {
  FakeClock clock;
  RateLimiter limiter(20 * kMB, clock);
  EXPECT_NEAR(limiter.burst(), 1 * kMB, 1e-9);  // 50 ms at 20 MB/s
  ASSERT_TRUE(limiter.acquire(1'000'000));
  EXPECT_NEAR(clock.slept, 0, 1e-9);
  ASSERT_TRUE(limiter.acquire(2'000'000));  // 2 MB of debt at 20 MB/s
  EXPECT_NEAR(clock.now, 100.1, 1e-9);
  ASSERT_TRUE(limiter.acquire(500'000));
  EXPECT_NEAR(clock.now, 100.125, 1e-9);
  EXPECT_NEAR(limiter.throttled_seconds(), 0.125, 1e-9);
  EXPECT_EQ(limiter.bytes_passed(), 3'500'000u);
}

TEST(RateLimiter, ARequestLargerThanTheBurstWaitsForItsRemainder) {
  FakeClock clock;
  RateLimiter limiter(10 * kMB, clock);
  ASSERT_TRUE(limiter.acquire(8 << 20));  // 8 MiB, burst 0.5 MB
  EXPECT_NEAR(clock.now - 100, (double(8 << 20) - 500'000) / (10 * kMB), 1e-9);
  // Slept in slices of at most 100 ms, so a cancellation is seen promptly.
  EXPECT_EQ(clock.sleeps, 8);
}

TEST(RateLimiter, IdleTimeRefillsOnlyUpToTheBurst) {
  FakeClock clock;
  RateLimiter limiter(1 * kMB, clock);
  EXPECT_NEAR(limiter.burst(), RateLimiter::kMinBurstBytes, 1e-9);  // 50 KB < 64 KiB
  ASSERT_TRUE(limiter.acquire(65536));
  clock.now += 3600;  // an hour idle: still only one burst ahead
  ASSERT_TRUE(limiter.acquire(65536 + 1'000'000));
  EXPECT_NEAR(clock.now, 100 + 3600 + 1.0, 1e-9);
}

TEST(RateLimiter, OverALongRunTheRateHoldsExactly) {
  FakeClock clock;
  RateLimiter limiter(20 * kMB, clock);
  const uint64_t total = 40'000'000;
  for (uint64_t done = 0; done < total; done += 1 << 20) {
    ASSERT_TRUE(limiter.acquire(std::min<uint64_t>(1 << 20, total - done)));
  }
  EXPECT_NEAR(clock.now - 100, (total - 1 * kMB) / (20 * kMB), 1e-9);
  EXPECT_NEAR(limiter.throttled_seconds(), clock.now - 100, 1e-9);
}

TEST(RateLimiter, ChangingTheRateAppliesToWhatFollows) {
  FakeClock clock;
  RateLimiter limiter(10 * kMB, clock);
  ASSERT_TRUE(limiter.acquire(500'000));  // the burst
  limiter.set_rate(5 * kMB);              // burst now 250 KB, none left
  ASSERT_TRUE(limiter.acquire(1'000'000));
  EXPECT_NEAR(clock.now, 100.2, 1e-9);
  limiter.set_rate(RateLimiter::kUnlimited);
  ASSERT_TRUE(limiter.acquire(1'000'000'000));
  EXPECT_NEAR(clock.now, 100.2, 1e-9);
  limiter.set_rate(10 * kMB);  // from unlimited: starts with a full burst
  ASSERT_TRUE(limiter.acquire(500'000));
  EXPECT_NEAR(clock.now, 100.2, 1e-9);
  ASSERT_TRUE(limiter.acquire(1'000'000));
  EXPECT_NEAR(clock.now, 100.3, 1e-9);
}

TEST(RateLimiter, UnlimitedNeverWaits) {
  FakeClock clock;
  RateLimiter limiter(RateLimiter::kUnlimited, clock);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(limiter.acquire(1ull << 30));
  EXPECT_EQ(clock.sleeps, 0);
  EXPECT_NEAR(limiter.throttled_seconds(), 0, 1e-9);
}

// A clock that requests cancellation on its third sleep.
class CancellingClock final : public RateClock {
 public:
  explicit CancellingClock(CancelToken& t) : token(t) {}
  double now_s() override { return now; }
  void sleep_s(double s) override {
    now += s;
    if (++sleeps == 3) token.request(2);
  }
  CancelToken& token;
  double now = 0;
  int sleeps = 0;
};

TEST(RateLimiter, CancellationEndsTheWait) {
  CancelToken cancel;
  CancellingClock clock(cancel);
  RateLimiter limiter(1 * kMB, clock);
  Status st = limiter.acquire(10'000'000, &cancel);  // ~10 s of debt
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kCancelled);
  EXPECT_EQ(clock.sleeps, 3);
  EXPECT_NEAR(limiter.throttled_seconds(), 0.3, 1e-9);
}

TEST(RateLimiter, ThreadsShareTheRateAndThrottledTimeIsWallTime) {
  RateLimiter limiter(20 * kMB);  // the real clock
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) ASSERT_TRUE(limiter.acquire(100'000));
    });
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // 4 MB at 20 MB/s, less the 1 MB burst: never faster than 150 ms.
  EXPECT_GE(wall, 0.15);
  EXPECT_LT(wall, 5.0);
  EXPECT_LE(limiter.throttled_seconds(), wall);
  EXPECT_GT(limiter.throttled_seconds(), 0.1);
}

}  // namespace
}  // namespace blkvault
