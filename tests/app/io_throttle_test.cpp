// app/io_throttle.h: the read limit of a backup, fixed and adaptive to a fake
// PSI file the test rewrites, on a fake clock (sleeping advances it).
#include "app/io_throttle.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include "temp_dir.h"

namespace blkvault::app {
namespace {

class FakeClock final : public RateClock {
 public:
  double now_s() override { return now; }
  void sleep_s(double seconds) override { now += seconds; }
  double now = 0;
};

class Warnings final : public Logger {
 public:
  void log(LogLevel level, std::string_view message) override {
    if (level == LogLevel::kWarning) lines.emplace_back(message);
  }
  std::vector<std::string> lines;
};

class ReadThrottleTest : public ::testing::Test {
 protected:
  void pressure(double some, double full = 0) {
    std::ofstream(psi_) << fmt::format("some avg10={:.2f} avg60=1.00 avg300=0.50 total=123456\n"
                                       "full avg10={:.2f} avg60=0.00 avg300=0.00 total=4567\n",
                                       some, full);
  }
  std::unique_ptr<ReadThrottle> make(const std::string& spec, std::string psi_path = "") {
    ReadThrottleOptions o;
    o.spec = spec;
    o.limit = *config::parse_read_limit(spec);
    o.psi_path = psi_path.empty() ? psi_ : psi_path;
    o.clock = &clock_;
    o.log = &warnings_;
    return std::make_unique<ReadThrottle>(o);
  }
  // A read of `bytes` at `t` (seconds on the fake clock).
  void read_at(ReadThrottle& t, double when, uint64_t bytes) {
    clock_.now = when;
    ASSERT_TRUE(t.before_read(bytes, cancel_));
  }

  test::TempDir dir_;
  std::string psi_ = dir_ / "io.pressure";
  FakeClock clock_;
  Warnings warnings_;
  CancelToken cancel_;
};

TEST(Psi, ParsesSomeAndFullAvg10) {
  auto s = parse_psi("some avg10=12.34 avg60=0.42 avg300=0.55 total=6198164\n"
                     "full avg10=5.01 avg60=0.00 avg300=0.20 total=3390140\n");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_DOUBLE_EQ(s->some_avg10, 12.34);
  EXPECT_DOUBLE_EQ(s->full_avg10, 5.01);
  auto only_some = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  ASSERT_TRUE(only_some);
  EXPECT_EQ(only_some->full_avg10, 0);
  for (const char* bad : {"", "full avg10=1.00 avg60=0 avg300=0 total=0\n", "some avg10=x avg60=0\n",
                          "some avg10=101.00 avg60=0\n", "something avg10=1.00\n", "some avg60=1.00 total=0\n"}) {
    auto r = parse_psi(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().message(), "no 'some avg10=' line");
  }
}

TEST_F(ReadThrottleTest, HalvesUnderPressureHoldsThenGrowsBackToMax) {
  pressure(0);
  auto t = make("auto:100");
  read_at(*t, 0, 0);  // the first poll: low pressure, already at the maximum
  EXPECT_EQ(t->limit_bytes_per_s(), 100e6);

  pressure(30);  // production waits on I/O 30% of the time
  read_at(*t, 1.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 50e6);
  read_at(*t, 2.0, 0);  // avg10 lags: no second cut within 5 s
  EXPECT_EQ(t->limit_bytes_per_s(), 50e6);
  read_at(*t, 5.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 50e6);
  read_at(*t, 6.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 25e6);

  // 2 MB read in the next 5 s: the cut starts from that rate (0.4 MB/s), and
  // stops at the 1 MB/s floor. The read itself waits for what the 1.25 MB
  // burst at 25 MB/s does not cover: 30 ms.
  read_at(*t, 6.5, 2'000'000);
  EXPECT_NEAR(clock_.now, 6.53, 1e-9);
  EXPECT_NEAR(t->throttled_seconds(), 0.03, 1e-9);
  read_at(*t, 11.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 1e6);

  pressure(10);  // between the thresholds: kept
  read_at(*t, 12.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 1e6);
  read_at(*t, 12.5, 0);  // not a poll yet either
  EXPECT_EQ(t->limit_bytes_per_s(), 1e6);

  pressure(1.5);  // quiet again: +25% a second, up to the maximum
  read_at(*t, 13.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 1.25e6);
  read_at(*t, 14.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 1.5625e6);
  int polls = 2;
  for (double when = 15; t->limit_bytes_per_s() < 100e6; when += 1, ++polls) read_at(*t, when, 0);
  EXPECT_EQ(polls, 21);  // 1.25^21 > 100 > 1.25^20
  EXPECT_EQ(t->limit_bytes_per_s(), 100e6);

  auto j = t->report_json();
  EXPECT_EQ(j["limit"], "auto:100");
  EXPECT_EQ(j["adaptive"], true);
  EXPECT_EQ(j["bytes_per_s"], 100e6);
  EXPECT_EQ(j["slowdowns"], 3);
  EXPECT_EQ(j["lowest_bytes_per_s"], 1e6);
  EXPECT_EQ(j["pressure_available"], true);
  EXPECT_EQ(j["pressure_file"], psi_);
  EXPECT_EQ(t->report_text(),
            "read limit auto, at most 100 MB/s: waited 0.03s; slowed 3 times by I/O pressure, to 1 MB/s at the lowest");
  EXPECT_TRUE(warnings_.lines.empty());
}

TEST_F(ReadThrottleTest, PlainAutoCutsFromTheRateReadAndIsLiftedAgainPastTenGBs) {
  pressure(60);
  auto t = make("auto");
  read_at(*t, 0, 0);  // high pressure, but nothing read yet to halve: no cut
  EXPECT_TRUE(std::isinf(t->limit_bytes_per_s()));
  pressure(0);
  read_at(*t, 0.5, 30'000'000);  // unlimited: no wait
  EXPECT_EQ(clock_.now, 0.5);
  pressure(55.5, 20);
  read_at(*t, 1.0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 15e6);  // half of the 30 MB/s read
  pressure(0);
  int polls = 0;
  for (double when = 2; !std::isinf(t->limit_bytes_per_s()); when += 1) {
    read_at(*t, when, 0);
    ASSERT_LT(++polls, 100);
  }
  EXPECT_EQ(polls, 30);  // 15 MB/s * 1.25^30 > 10 GB/s > 15 MB/s * 1.25^29
  EXPECT_TRUE(t->report_json()["bytes_per_s"].is_null());
  EXPECT_EQ(t->report_json()["lowest_bytes_per_s"], 15e6);
}

TEST_F(ReadThrottleTest, UnavailablePressureIsSaidOnceAndReadsRunAtMax) {
  auto t = make("auto:50", dir_ / "no-such-file");
  read_at(*t, 0, 0);
  read_at(*t, 1, 0);
  read_at(*t, 2, 0);
  ASSERT_EQ(warnings_.lines.size(), 1u);
  EXPECT_EQ(warnings_.lines[0], "--limit-read auto:50: I/O pressure is unavailable (cannot read " +
                                    (dir_ / "no-such-file") + ": No such file or directory): reading at 50 MB/s");
  EXPECT_EQ(t->limit_bytes_per_s(), 50e6);
  EXPECT_EQ(t->report_json()["pressure_available"], false);
  EXPECT_EQ(t->report_text(), "read limit auto, at most 50 MB/s: waited 0.00s; I/O pressure unavailable (cannot read " +
                                  (dir_ / "no-such-file") + ": No such file or directory)");

  std::ofstream(psi_) << "garbage\n";
  auto u = make("auto");
  read_at(*u, 0, 0);
  ASSERT_EQ(warnings_.lines.size(), 2u);
  EXPECT_EQ(warnings_.lines[1],
            "--limit-read auto: I/O pressure is unavailable (" + psi_ + ": no 'some avg10=' line): reading without a limit");
  EXPECT_TRUE(std::isinf(u->limit_bytes_per_s()));
}

TEST_F(ReadThrottleTest, PressureThatVanishesMidRunFallsBackToMaxOnce) {
  pressure(40);
  auto t = make("auto:80");
  read_at(*t, 0, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 40e6);
  std::filesystem::remove(psi_);
  read_at(*t, 1, 0);
  read_at(*t, 2, 0);
  EXPECT_EQ(t->limit_bytes_per_s(), 80e6);
  EXPECT_EQ(warnings_.lines.size(), 1u);
}

TEST_F(ReadThrottleTest, AFixedLimitIgnoresPressureAndCutsReadsIntoSlices) {
  pressure(90);
  auto t = make("20");
  std::vector<std::pair<uint64_t, size_t>> calls;
  ReadAt read = [&](uint64_t off, std::span<uint8_t> data) -> Status {
    calls.emplace_back(off, data.size());
    return {};
  };
  ReadAt throttled = t->wrap(read, cancel_);
  std::vector<uint8_t> buf(3 * (1 << 20) + 4096);
  ASSERT_TRUE(throttled(1 << 30, buf));
  const uint64_t m = 1 << 20;
  EXPECT_EQ(calls, (std::vector<std::pair<uint64_t, size_t>>{
                       {1ull << 30, m}, {(1ull << 30) + m, m}, {(1ull << 30) + 2 * m, m}, {(1ull << 30) + 3 * m, 4096}}));
  EXPECT_NEAR(clock_.now, (buf.size() - 1e6) / 20e6, 1e-9);  // everything past the 1 MB burst at 20 MB/s
  EXPECT_EQ(t->limit_bytes_per_s(), 20e6);
  auto j = t->report_json();
  EXPECT_EQ(j, nlohmann::json({{"limit", "20"}, {"adaptive", false}, {"bytes_per_s", 20e6},
                               {"throttled_s", t->throttled_seconds()}}));
  EXPECT_EQ(t->report_text(), "read limit 20 MB/s: waited " + format_duration(t->throttled_seconds()));
}

TEST_F(ReadThrottleTest, AFailedSliceStopsTheRead) {
  auto t = make("100");
  int n = 0;
  ReadAt read = [&](uint64_t, std::span<uint8_t>) -> Status {
    if (++n == 2) return fail(ErrorCode::kIo, "reading the image: Input/output error");
    return {};
  };
  std::vector<uint8_t> buf(4 << 20);
  Status st = t->wrap(read, cancel_)(0, buf);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "reading the image: Input/output error");
  EXPECT_EQ(n, 2);
}

TEST(FormatLimit, MegabytesASecond) {
  EXPECT_EQ(format_limit(20e6), "20 MB/s");
  EXPECT_EQ(format_limit(2.5e6), "2.5 MB/s");
  EXPECT_EQ(format_limit(1.5625e6), "1.56 MB/s");
  EXPECT_EQ(format_limit(RateLimiter::kUnlimited), "unlimited");
}

}  // namespace
}  // namespace blkvault::app
