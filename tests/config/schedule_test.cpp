// config/schedule.h: cron expressions parsed field by field, calendar specs checked.
#include "config/schedule.h"

#include <gtest/gtest.h>

namespace blkvault::config {
namespace {

std::string error_of(std::string_view text) {
  auto s = parse_schedule(text);
  if (s) return "(valid)";
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  return s.error().message();
}

TEST(CronSchedule, ParsesEveryFieldForm) {
  auto s = parse_schedule(" 15 */4 1,15 jan-mar,Dec mon-fri ");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->kind, Schedule::Kind::kCron);
  EXPECT_EQ(s->text, "15 */4 1,15 jan-mar,Dec mon-fri");
  EXPECT_EQ(s->cron.minutes.count(), 1u);
  EXPECT_TRUE(s->cron.minutes[15]);
  EXPECT_EQ(s->cron.hours.to_ulong(), (1ul << 0) | (1ul << 4) | (1ul << 8) | (1ul << 12) | (1ul << 16) | (1ul << 20));
  EXPECT_EQ(s->cron.days_of_month.to_ulong(), (1ul << 1) | (1ul << 15));
  EXPECT_EQ(s->cron.months.to_ulong(), (1ul << 1) | (1ul << 2) | (1ul << 3) | (1ul << 12));
  EXPECT_EQ(s->cron.days_of_week.to_ulong(), 0b0111110ul);
  EXPECT_TRUE(s->cron.day_of_month_restricted);
  EXPECT_TRUE(s->cron.day_of_week_restricted);
}

TEST(CronSchedule, SevenIsSundayAndStarsAreUnrestricted) {
  auto s = parse_schedule("0-30/10 2 * * 5-7");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->cron.minutes.to_ullong(), (1ull << 0) | (1ull << 10) | (1ull << 20) | (1ull << 30));
  EXPECT_EQ(s->cron.days_of_week.to_ulong(), (1ul << 0) | (1ul << 5) | (1ul << 6));
  EXPECT_FALSE(s->cron.day_of_month_restricted);
  EXPECT_TRUE(s->cron.day_of_week_restricted);
  EXPECT_EQ(s->cron.days_of_month.count(), 31u);
}

TEST(CronSchedule, ExpandsNicknames) {
  auto s = parse_schedule("@weekly");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind, Schedule::Kind::kCron);
  EXPECT_EQ(s->text, "@weekly");
  EXPECT_EQ(s->cron.minutes.to_ullong(), 1u);
  EXPECT_EQ(s->cron.hours.to_ulong(), 1u);
  EXPECT_EQ(s->cron.days_of_week.to_ulong(), 1u);
  EXPECT_EQ(error_of("@reboot"),
            "unknown cron nickname '@reboot' (known: @hourly, @daily, @midnight, @weekly, @monthly, @yearly, "
            "@annually)");
}

TEST(CronSchedule, NamesTheFieldAndTheProblem) {
  EXPECT_EQ(error_of("0 25 * * *"), "cron field 2 (hour): 25 is out of range 0-23");
  EXPECT_EQ(error_of("60 0 * * *"), "cron field 1 (minute): 60 is out of range 0-59");
  EXPECT_EQ(error_of("0 0 0 * *"), "cron field 3 (day of month): 0 is out of range 1-31");
  EXPECT_EQ(error_of("0 0 * 13 *"), "cron field 4 (month): 13 is out of range 1-12");
  EXPECT_EQ(error_of("0 0 * * 8"), "cron field 5 (day of week): 8 is out of range 0-7");
  EXPECT_EQ(error_of("0 0 * foo *"),
            "cron field 4 (month): 'foo' is neither a number from 1 to 12 nor a month name (jan..dec)");
  EXPECT_EQ(error_of("0 0 * * mon-sunday"),
            "cron field 5 (day of week): 'sunday' is neither a number from 0 to 7 nor a day name (sun..sat)");
  EXPECT_EQ(error_of("0 mon * * *"), "cron field 2 (hour): 'mon' is not a number from 0 to 23");
  EXPECT_EQ(error_of("0 5-2 * * *"), "cron field 2 (hour): range 5-2 goes backwards");
  EXPECT_EQ(error_of("*/0 * * * *"), "cron field 1 (minute): step 0 is out of range 1-60");
  EXPECT_EQ(error_of("*/x * * * *"), "cron field 1 (minute): step 'x' is not a number");
  EXPECT_EQ(error_of("5/10 * * * *"),
            "cron field 1 (minute): '5/10': a step needs a range or '*' (such as '*/10' or '5-59/10')");
  EXPECT_EQ(error_of("1,,2 * * * *"), "cron field 1 (minute): empty element in a list");
  EXPECT_EQ(error_of("1- * * * *"), "cron field 1 (minute): a value is missing");
}

TEST(CalendarSchedule, AcceptsShorthandsAndTheDocumentedShape) {
  for (const char* spec : {"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly",
                           "semiannually", "*-*-* 02:00:00", "02:00", "Mon..Fri 22:30", "Sat,Sun 03:00",
                           "Mon *-*-* 00:00:00", "*-*-01 04:00", "2024-06-01 00:00:00", "Fri", "*:0/15",
                           "*-02~03 12:00", "Mon-Fri 08..18:00:00", "*-*-* 02:00:00 UTC",
                           "*-*-* 02:00 Europe/Berlin", "*-1,4,7,10-1 05:00", "*-*-* 00:00:05.5", "monday 1:2:3",
                           "Daily", "hourly UTC", "Mon,Wed..Fri 01:00", "*-*-* *:*:*", "*-*~1", "12,14,16:00"}) {
    auto s = parse_schedule(spec);
    EXPECT_TRUE(s) << spec << ": " << s.error().message();
    if (s) {
      EXPECT_EQ(s->kind, Schedule::Kind::kCalendar) << spec;
    }
  }
}

TEST(CalendarSchedule, NamesTheComponentAndTheProblem) {
  EXPECT_EQ(error_of("*-*-* 25:00:00"), "calendar spec: hour 25 is out of range 0-23");
  EXPECT_EQ(error_of("*-13-* 02:00"), "calendar spec: month 13 is out of range 1-12");
  EXPECT_EQ(error_of("*-*-32"), "calendar spec: day 32 is out of range 1-31");
  EXPECT_EQ(error_of("02:61"), "calendar spec: minute 61 is out of range 0-59");
  EXPECT_EQ(error_of("Sun-Tue"), "calendar spec: weekday range Sun-Tue goes backwards (weeks run Mon..Sun)");
  EXPECT_EQ(error_of("Mnday 02:00"), "calendar spec: 'Mnday' is not a weekday (Mon..Sun)");
  EXPECT_EQ(error_of("*-*-* 1..x:00"), "calendar spec: hour 'x' is not a number");
  EXPECT_EQ(error_of("*-*-* 05..02:00"), "calendar spec: hour range 05..02 goes backwards");
  EXPECT_EQ(error_of("*:*/0"), "calendar spec: minute repetition '/0' is not a positive number");
  EXPECT_EQ(error_of("1-2-3-4"), "calendar spec: date '1-2-3-4' is not of the form Y-M-D or M-D");
  EXPECT_EQ(error_of("2:3:4:5"), "calendar spec: time '2:3:4:5' is not of the form H:M or H:M:S");
  EXPECT_EQ(error_of("nightly"),
            "calendar spec: 'nightly' is neither a shorthand (minutely, hourly, daily, weekly, monthly, yearly, "
            "quarterly, semiannually) nor a weekday (expected a systemd calendar spec such as 'daily', "
            "'Mon..Fri 02:00' or '*-*-* 02:30:00', or a cron expression of 5 fields)");
  EXPECT_EQ(error_of("0 2 * *"),
            "calendar spec: unexpected '0' (expected a systemd calendar spec such as 'daily', 'Mon..Fri 02:00' or "
            "'*-*-* 02:30:00', or a cron expression of 5 fields)");
  EXPECT_EQ(error_of("02:00 every day"),
            "calendar spec: unexpected 'every' (expected a systemd calendar spec such as 'daily', 'Mon..Fri 02:00' "
            "or '*-*-* 02:30:00', or a cron expression of 5 fields)");
  EXPECT_EQ(error_of(""),
            "calendar spec: empty schedule (expected a systemd calendar spec such as 'daily', 'Mon..Fri 02:00' or "
            "'*-*-* 02:30:00', or a cron expression of 5 fields)");
}

}  // namespace
}  // namespace blkvault::config
