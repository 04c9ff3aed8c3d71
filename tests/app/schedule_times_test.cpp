// Next run times of cron expressions (TZ fixed to UTC, and to a zone with
// daylight saving time), and the translations between cron expressions and
// systemd calendar specs, against hand-written expectations.
#include "app/schedule_times.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

namespace blkvault::app {
namespace {

class ScheduleTimesTest : public ::testing::Test {
 protected:
  void SetUp() override { set_tz("UTC"); }
  void TearDown() override {
    if (old_tz_) {
      ::setenv("TZ", old_tz_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  void set_tz(const char* tz) {
    ::setenv("TZ", tz, 1);
    ::tzset();
  }
  static std::string text(std::time_t t) {
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %Z", &tm);
    return buf;
  }
  static std::vector<std::string> next(const std::string& cron, const std::string& after_utc, size_t n) {
    auto spec = config::parse_cron(cron);
    EXPECT_TRUE(spec.has_value()) << cron;
    std::tm tm{};
    ::strptime(after_utc.c_str(), "%Y-%m-%d %H:%M", &tm);
    std::vector<std::string> out;
    for (auto t : next_cron_times(*spec, ::timegm(&tm), n)) out.push_back(text(t));
    return out;
  }

 private:
  std::optional<std::string> old_tz_ = std::getenv("TZ") ? std::optional<std::string>(std::getenv("TZ")) : std::nullopt;
};

TEST_F(ScheduleTimesTest, NextCronTimesFollowEachField) {
  EXPECT_EQ(next("15 */4 * * *", "2026-11-25 03:20", 3),
            (std::vector<std::string>{"2026-11-25 04:15 UTC", "2026-11-25 08:15 UTC", "2026-11-25 12:15 UTC"}));
  // Strictly after: a time that matches exactly is not "next".
  EXPECT_EQ(next("30 2 * * *", "2026-11-25 02:30", 2),
            (std::vector<std::string>{"2026-11-26 02:30 UTC", "2026-11-27 02:30 UTC"}));
  // 2026-11-25 is a Wednesday.
  EXPECT_EQ(next("0 22 * * mon-fri", "2026-11-27 23:00", 2),
            (std::vector<std::string>{"2026-11-30 22:00 UTC", "2026-12-01 22:00 UTC"}));
  EXPECT_EQ(next("0 0 29 2 *", "2026-01-01 00:00", 1), (std::vector<std::string>{"2028-02-29 00:00 UTC"}));
  EXPECT_TRUE(next("0 0 31 2 *", "2026-01-01 00:00", 1).empty());
}

TEST_F(ScheduleTimesTest, BothDayFieldsRestrictedMatchEitherAsCronDoes) {
  // The 1st of the month or any Monday: 2026-12-01 is a Tuesday.
  EXPECT_EQ(next("0 3 1 * mon", "2026-11-25 00:00", 3),
            (std::vector<std::string>{"2026-11-30 03:00 UTC", "2026-12-01 03:00 UTC", "2026-12-07 03:00 UTC"}));
}

TEST_F(ScheduleTimesTest, NextCronTimesAreLocalTimeAcrossDaylightSavingChanges) {
  set_tz("Europe/Berlin");
  // 2026-03-29 02:00 CET does not exist (clocks jump to 03:00 CEST).
  auto t = next("30 1 * * *", "2026-03-28 12:00", 3);
  EXPECT_EQ(t, (std::vector<std::string>{"2026-03-29 01:30 CET", "2026-03-30 01:30 CEST", "2026-03-31 01:30 CEST"}));
}

TEST_F(ScheduleTimesTest, CronExpressionsBecomeCalendarSpecs) {
  auto cal = [](const std::string& cron) { return cron_to_calendar(*config::parse_cron(cron)); };
  EXPECT_EQ(cal("30 2 * * *"), std::vector<std::string>{"*-*-* 02:30:00"});
  EXPECT_EQ(cal("15 */4 * * *"), std::vector<std::string>{"*-*-* 00/4:15:00"});
  EXPECT_EQ(cal("*/15 * * * *"), std::vector<std::string>{"*-*-* *:00/15:00"});
  EXPECT_EQ(cal("0 22 * * 1-5"), std::vector<std::string>{"Mon,Tue,Wed,Thu,Fri *-*-* 22:00:00"});
  EXPECT_EQ(cal("0 0 * * 0"), std::vector<std::string>{"Sun *-*-* 00:00:00"});
  EXPECT_EQ(cal("5 4 1,15 jan,jul *"), std::vector<std::string>{"*-01,07-01,15 04:05:00"});
  EXPECT_EQ(cal("0 3 1 * mon"), (std::vector<std::string>{"*-*-01 03:00:00", "Mon *-*-* 03:00:00"}));
}

TEST_F(ScheduleTimesTest, CalendarSpecsBecomeCronExpressionsWhereCronCanSayTheSame) {
  EXPECT_EQ(calendar_to_cron("daily").value(), "0 0 * * *");
  EXPECT_EQ(calendar_to_cron("weekly").value(), "0 0 * * 1");
  EXPECT_EQ(calendar_to_cron("*-*-* 02:30:00").value(), "30 02 * * *");
  EXPECT_EQ(calendar_to_cron("Mon..Fri 22:00").value(), "00 22 * * mon-fri");
  EXPECT_EQ(calendar_to_cron("Saturday,Sunday 03:15").value(), "15 03 * * sat,sun");
  EXPECT_EQ(calendar_to_cron("*-*-1,15 4:05").value(), "05 4 1,15 * *");
  EXPECT_EQ(calendar_to_cron("*:0/15").value(), "0-59/15 * * * *");
  EXPECT_EQ(calendar_to_cron("*-01..06-01 00:00").value(), "00 00 01 01-06 *");

  auto why = [](const char* spec) {
    auto r = calendar_to_cron(spec);
    EXPECT_FALSE(r.has_value()) << spec;
    return r ? std::string() : r.error().message();
  };
  EXPECT_EQ(why("*-*-* 02:30:15"),
            "calendar spec '*-*-* 02:30:15' cannot be written as a cron expression: it has seconds other than 0");
  EXPECT_EQ(why("Mon..Fri 22:00 Europe/Berlin"),
            "calendar spec 'Mon..Fri 22:00 Europe/Berlin' cannot be written as a cron expression: it has a time zone");
  EXPECT_EQ(why("Sat *-*-1..7 03:00"),
            "calendar spec 'Sat *-*-1..7 03:00' cannot be written as a cron expression: it has both a weekday and a "
            "day of the month (cron runs when either matches)");
  EXPECT_EQ(why("*-*~1 00:00"),
            "calendar spec '*-*~1 00:00' cannot be written as a cron expression: it has '~' (days from the end of the "
            "month)");
  EXPECT_EQ(why("2027-*-* 00:00"),
            "calendar spec '2027-*-* 00:00' cannot be written as a cron expression: it has a year");
}

// Every conversion is checked by cron's own parser and, both ways, means the
// same run times.
TEST_F(ScheduleTimesTest, ARoundTripKeepsTheRunTimes) {
  for (const char* cron : {"30 2 * * *", "15 */4 * * *", "0 22 * * 1-5", "5 4 1,15 1,7 *"}) {
    auto spec = config::parse_cron(cron);
    ASSERT_TRUE(spec.has_value());
    auto calendars = cron_to_calendar(*spec);
    ASSERT_EQ(calendars.size(), 1u);
    auto back = calendar_to_cron(calendars[0]);
    ASSERT_TRUE(back.has_value()) << calendars[0] << ": " << back.error().message();
    auto respec = config::parse_cron(*back);
    ASSERT_TRUE(respec.has_value()) << *back;
    const std::time_t from = 1'790'000'000;
    EXPECT_EQ(next_cron_times(*spec, from, 20), next_cron_times(*respec, from, 20)) << cron << " -> " << *back;
  }
}

}  // namespace
}  // namespace blkvault::app
