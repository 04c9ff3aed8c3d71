// Keep rules on a synthetic timeline, against hand-computed expectations.
#include "repo/retention.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <set>

namespace blkvault::repo {
namespace {

// 2026-11-01T00:00:00Z, a Sunday (ISO week 2026-W44).
constexpr int64_t kNov1 = 1793491200LL * 1000;
constexpr int64_t kHour = 3600LL * 1000;

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tz = std::getenv("TZ");
    if (tz != nullptr) saved_tz_ = tz;
    had_tz_ = tz != nullptr;
    setenv("TZ", "UTC", 1);
    tzset();
    // Every 6 hours for 10 days: ids 1..40; day d (1-based) holds ids 4d-3..4d.
    for (GenerationId id = 1; id <= 40; ++id) {
      GenerationInfo g;
      g.id = id;
      g.state = GenerationState::kComplete;
      g.started_ms = kNov1 + static_cast<int64_t>(id - 1) * 6 * kHour;
      g.devices.push_back(DeviceRecord{.name = "a"});
      if (id <= 20) g.devices.push_back(DeviceRecord{.name = "b"});
      gens_.push_back(g);
    }
  }
  void TearDown() override {
    if (had_tz_) {
      setenv("TZ", saved_tz_.c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

  std::set<GenerationId> kept(const RetentionPolicy& p) {
    auto r = apply_retention(gens_, p);
    EXPECT_TRUE(r) << r.error().message();
    std::set<GenerationId> out;
    if (r) {
      for (const auto& d : *r) {
        if (d.keep) out.insert(d.id);
      }
    }
    return out;
  }

  std::vector<GenerationInfo> gens_;
  std::string saved_tz_;
  bool had_tz_ = false;
};

TEST_F(RetentionTest, TheStartIsTheSundayTheTimelineAssumes) {
  const time_t t = static_cast<time_t>(kNov1 / 1000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  EXPECT_EQ(tm.tm_year + 1900, 2026);
  EXPECT_EQ(tm.tm_mon, 10);
  EXPECT_EQ(tm.tm_mday, 1);
  EXPECT_EQ(tm.tm_hour, 0);
  EXPECT_EQ(tm.tm_wday, 0);
}

TEST_F(RetentionTest, KeepLastKeepsTheNewestAndTheLatestOfEachDevice) {
  EXPECT_EQ(kept({.last = 2}), (std::set<GenerationId>{40, 39, 20}));  // 20: the latest backup of b
}

TEST_F(RetentionTest, KeepDailyKeepsTheNewestOfEachOfTheLastDays) {
  EXPECT_EQ(kept({.daily = 3}), (std::set<GenerationId>{40, 36, 32, 20}));
  EXPECT_EQ(kept({.last = 2, .daily = 3}), (std::set<GenerationId>{40, 39, 36, 32, 20}));
}

TEST_F(RetentionTest, KeepHourlyCountsHoursThatHaveAGeneration) {
  // One generation every 6 hours: each is alone in its hour.
  EXPECT_EQ(kept({.hourly = 3}), (std::set<GenerationId>{40, 39, 38, 20}));
}

TEST_F(RetentionTest, KeepWeeklyUsesIsoWeeksStartingOnMonday) {
  // W46 = Nov 9-10 (newest 40), W45 = Nov 2-8 (newest: Nov 8 18:00 = 32), W44 = Nov 1 (4).
  EXPECT_EQ(kept({.weekly = 2}), (std::set<GenerationId>{40, 32, 20}));
  EXPECT_EQ(kept({.weekly = 3}), (std::set<GenerationId>{40, 32, 4, 20}));
}

TEST_F(RetentionTest, KeepMonthlyAndYearly) {
  EXPECT_EQ(kept({.monthly = 2}), (std::set<GenerationId>{40, 20}));
  EXPECT_EQ(kept({.yearly = 5}), (std::set<GenerationId>{40, 20}));
}

TEST_F(RetentionTest, ReasonsNameTheRuleAndTheBucket) {
  auto r = apply_retention(gens_, {.last = 1, .daily = 2});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->front().id, 40u);  // newest first
  EXPECT_EQ(r->front().reasons, (std::vector<std::string>{"last 1", "daily 2026-11-10", "latest of a"}));
  const auto& g36 = (*r)[4];
  EXPECT_EQ(g36.id, 36u);
  EXPECT_EQ(g36.reasons, (std::vector<std::string>{"daily 2026-11-09"}));
  const auto& g20 = (*r)[20];
  EXPECT_EQ(g20.id, 20u);
  EXPECT_EQ(g20.reasons, (std::vector<std::string>{"latest of b"}));
  EXPECT_FALSE((*r)[1].keep);
  EXPECT_TRUE((*r)[1].reasons.empty());
}

TEST_F(RetentionTest, FailedAndPartialDevicesDoNotCountAsTheLatest) {
  gens_[39].devices[0].complete = false;  // 40: device a failed (a partial generation)
  gens_[39].state = GenerationState::kPartial;
  gens_[38].state = GenerationState::kFailed;  // 39 never committed
  auto r = apply_retention(gens_, {.last = 1});
  ASSERT_TRUE(r);
  std::set<GenerationId> keep;
  for (const auto& d : *r) {
    if (d.keep) keep.insert(d.id);
  }
  EXPECT_EQ(keep, (std::set<GenerationId>{40, 38, 20}));  // 38: the latest good backup of a
  for (const auto& d : *r) EXPECT_NE(d.id, 39u) << "failed generations take no part";
}

TEST_F(RetentionTest, TimeZoneDecidesTheDay) {
  setenv("TZ", "America/New_York", 1);  // UTC-5 in November
  tzset();
  // Local days shift by 5 hours: Nov 10 local holds 18:00Z..Nov 11 04:59Z, so
  // generation 40 (Nov 10 18:00Z = 13:00 local) and 37 (Nov 10 00:00Z = Nov 9 19:00 local).
  EXPECT_EQ(kept({.daily = 2}), (std::set<GenerationId>{40, 37, 20}));
}

TEST_F(RetentionTest, AnEmptyPolicyIsRefused) {
  auto r = apply_retention(gens_, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(),
            "no keep rule given (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, "
            "--keep-yearly): refusing to remove every generation");
  EXPECT_FALSE(apply_retention(gens_, {.daily = -1}));
}

}  // namespace
}  // namespace blkvault::repo
