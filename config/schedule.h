// config/schedule.h — a job's schedule as written in the configuration: either
// a cron expression (5 fields, or an @daily-style nickname) or a systemd
// calendar spec (OnCalendar=, systemd.time(7)). Pure functions; safe from any
// thread.
//
// Cron expressions are parsed completely (each field's ranges, lists, steps and
// month/day names), so later code can compute run times from CronSpec. Calendar
// specs are checked for shape and ranges only (the shorthand words, and
// "[WEEKDAYS] [[Y-]M-D] [H:M[:S]] [TIMEZONE]"); systemd stays the judge of
// what they mean.
#pragma once

#include <bitset>
#include <string>
#include <string_view>

#include "common/error.h"

namespace blkvault::config {

// The values a cron expression matches. Day-of-week 7 is stored as 0 (Sunday).
// As in cron(8): when both day fields are restricted (neither starts with
// '*'), a day matches when EITHER matches.
struct CronSpec {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days_of_month;  // bits 1..31
  std::bitset<13> months;         // bits 1..12
  std::bitset<7> days_of_week;    // bit 0 = Sunday
  bool day_of_month_restricted = false;
  bool day_of_week_restricted = false;
};

struct Schedule {
  enum class Kind { kCron, kCalendar };
  Kind kind = Kind::kCalendar;
  std::string text;  // as written, surrounding blanks removed
  CronSpec cron;     // only for kCron (nicknames expanded: @daily = "0 0 * * *")
};

// Five blank-separated fields or a leading '@' make a cron expression; anything
// else is read as a calendar spec. On failure, kInvalidArgument naming the
// offending part: "cron field 2 (hour): 25 is out of range 0-23".
Result<Schedule> parse_schedule(std::string_view text);

// Cron only: "minute hour day-of-month month day-of-week" -> CronSpec.
Result<CronSpec> parse_cron(std::string_view text);

// Calendar only: checks a systemd calendar spec's syntax.
Status check_calendar(std::string_view text);

}  // namespace blkvault::config
