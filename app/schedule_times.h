// app/schedule_times.h — what `blkvault schedule` needs to know about a job's
// schedule (config/schedule.h): its next run times, and the same schedule in
// the other scheduler's language (a cron expression as systemd OnCalendar=
// specs, a calendar spec as a cron expression) where that is exact.
//
// Pure functions of their arguments (the local time zone, TZ, for run times);
// safe from any thread.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "config/schedule.h"

namespace blkvault::app {

// The next `count` times after `after` (Unix seconds, exclusive) that `spec`
// matches, in the local time zone as cron(8) does. Fewer when the spec matches
// nothing within 8 years (e.g. "0 0 31 2 *").
std::vector<std::time_t> next_cron_times(const config::CronSpec& spec, std::time_t after, size_t count);

// OnCalendar= values that together match exactly what `spec` matches: one,
// or two when both day fields are restricted (cron matches a day when EITHER
// does; a calendar spec's weekday and date must BOTH match). Seconds are 00.
std::vector<std::string> cron_to_calendar(const config::CronSpec& spec);

// A calendar spec as a 5-field cron expression, when cron can say exactly the
// same thing; else kUnsupported saying why ("a time zone", "seconds other
// than 0", "both a weekday and a day of the month", "'~' (days from the end of
// the month)", "a year").
Result<std::string> calendar_to_cron(std::string_view spec);

}  // namespace blkvault::app
