#include "app/schedule_times.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace blkvault::app {
namespace {

constexpr const char* kWeekdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

bool day_matches(const config::CronSpec& s, const std::tm& tm) {
  const bool dom = s.days_of_month.test(static_cast<size_t>(tm.tm_mday));
  const bool dow = s.days_of_week.test(static_cast<size_t>(tm.tm_wday));
  if (s.day_of_month_restricted && s.day_of_week_restricted) return dom || dow;
  return dom && dow;
}

// "0/15" when the values are start, start+step, ... up to `max` (3 or more of
// them); else a comma list. `width` pads numbers ("02").
template <size_t N>
std::string values_text(const std::bitset<N>& bits, int min, int max, int width) {
  std::vector<int> v;
  for (int i = min; i <= max; ++i) {
    if (bits.test(static_cast<size_t>(i))) v.push_back(i);
  }
  if (static_cast<int>(v.size()) == max - min + 1) return "*";
  auto num = [&](int x) { return fmt::format("{:0{}}", x, width); };
  if (v.size() >= 3) {
    const int step = v[1] - v[0];
    bool progression = true;
    for (size_t i = 1; i < v.size(); ++i) progression = progression && v[i] - v[i - 1] == step;
    if (progression && v.back() + step > max) return fmt::format("{}/{}", num(v[0]), step);
  }
  std::string out;
  for (int x : v) out += (out.empty() ? "" : ",") + num(x);
  return out;
}

std::string weekdays_text(const std::bitset<7>& bits) {
  std::string out;
  for (int d = 1; d <= 7; ++d) {  // Monday first, as systemd prints them
    if (bits.test(static_cast<size_t>(d % 7))) out += (out.empty() ? "" : ",") + std::string(kWeekdays[d % 7]);
  }
  return out;
}

tl::unexpected<Error> unsupported(std::string_view spec, std::string_view why) {
  return fail(ErrorCode::kUnsupported,
              fmt::format("calendar spec '{}' cannot be written as a cron expression: it has {}", spec, why));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// One date or time component ("*", "5", "1,15", "8..17", "0/15", "*/2") in
// cron syntax; "" when it cannot be translated.
std::string component_to_cron(std::string_view c, int max) {
  std::string out;
  size_t start = 0;
  while (start <= c.size()) {
    size_t end = c.find(',', start);
    if (end == std::string_view::npos) end = c.size();
    std::string item(c.substr(start, end - start));
    if (item.empty() || item.find('~') != std::string::npos) return "";
    auto dots = item.find("..");
    if (dots != std::string::npos) item.replace(dots, 2, "-");
    auto slash = item.find('/');
    if (slash != std::string::npos && item.substr(0, slash).find('-') == std::string::npos &&
        item.substr(0, slash) != "*") {
      item.insert(slash, fmt::format("-{}", max));  // "0/15" starts at 0 and repeats to the end
    }
    out += (out.empty() ? "" : ",") + item;
    start = end + 1;
  }
  return out;
}

}  // namespace

std::vector<std::time_t> next_cron_times(const config::CronSpec& spec, std::time_t after, size_t count) {
  std::vector<std::time_t> out;
  std::tm tm{};
  std::time_t t = after - after % 60 + 60;
  ::localtime_r(&t, &tm);
  const int last_year = tm.tm_year + 8;
  auto normalize = [&] {
    tm.tm_isdst = -1;
    t = std::mktime(&tm);
    ::localtime_r(&t, &tm);
  };
  while (out.size() < count && tm.tm_year <= last_year) {
    if (!spec.months.test(static_cast<size_t>(tm.tm_mon + 1))) {
      tm.tm_mon += 1, tm.tm_mday = 1, tm.tm_hour = 0, tm.tm_min = 0;
    } else if (!day_matches(spec, tm)) {
      tm.tm_mday += 1, tm.tm_hour = 0, tm.tm_min = 0;
    } else if (!spec.hours.test(static_cast<size_t>(tm.tm_hour))) {
      tm.tm_hour += 1, tm.tm_min = 0;
    } else if (!spec.minutes.test(static_cast<size_t>(tm.tm_min))) {
      tm.tm_min += 1;
    } else {
      if (out.empty() || t > out.back()) out.push_back(t);
      tm.tm_min += 1;
    }
    normalize();
  }
  return out;
}

std::vector<std::string> cron_to_calendar(const config::CronSpec& s) {
  const std::string time = values_text(s.hours, 0, 23, 2) + ":" + values_text(s.minutes, 0, 59, 2) + ":00";
  const std::string month = values_text(s.months, 1, 12, 2);
  const std::string dom = values_text(s.days_of_month, 1, 31, 2);
  const std::string dow = weekdays_text(s.days_of_week);
  const bool all_days_of_week = s.days_of_week.count() == 7;
  if (s.day_of_month_restricted && s.day_of_week_restricted) {
    return {fmt::format("*-{}-{} {}", month, dom, time), fmt::format("{} *-{}-* {}", dow, month, time)};
  }
  std::string spec = fmt::format("*-{}-{} {}", month, dom, time);
  if (!all_days_of_week) spec = dow + " " + spec;
  return {spec};
}

Result<std::string> calendar_to_cron(std::string_view spec) {
  const std::string word = lower(spec);
  static const std::pair<const char*, const char*> kShorthands[] = {
      {"minutely", "* * * * *"},       {"hourly", "0 * * * *"},          {"daily", "0 0 * * *"},
      {"weekly", "0 0 * * 1"},         {"monthly", "0 0 1 * *"},         {"yearly", "0 0 1 1 *"},
      {"annually", "0 0 1 1 *"},       {"quarterly", "0 0 1 1,4,7,10 *"}, {"semiannually", "0 0 1 1,7 *"}};
  for (const auto& [name, cron] : kShorthands) {
    if (word == name) return std::string(cron);
  }
  std::vector<std::string> words;
  for (size_t i = 0; i < spec.size();) {
    while (i < spec.size() && spec[i] == ' ') ++i;
    size_t start = i;
    while (i < spec.size() && spec[i] != ' ') ++i;
    if (i > start) words.emplace_back(spec.substr(start, i - start));
  }
  std::string dow = "*", month = "*", dom = "*", hour = "0", minute = "0";
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w.find(':') != std::string::npos) {
      auto first = w.find(':');
      auto second = w.find(':', first + 1);
      std::string h = w.substr(0, first);
      std::string m = w.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1);
      if (second != std::string::npos) {
        std::string sec = w.substr(second + 1);
        if (sec != "00" && sec != "0") return unsupported(spec, "seconds other than 0");
      }
      hour = component_to_cron(h, 23);
      minute = component_to_cron(m, 59);
      if (hour.empty() || minute.empty()) return unsupported(spec, "a time cron cannot express");
    } else if (w.find('-') != std::string::npos && std::isalpha(static_cast<unsigned char>(w[0])) == 0) {
      if (w.find('~') != std::string::npos) return unsupported(spec, "'~' (days from the end of the month)");
      std::vector<std::string> parts;
      for (size_t s = 0;;) {
        size_t e = w.find('-', s);
        parts.push_back(w.substr(s, e == std::string::npos ? std::string::npos : e - s));
        if (e == std::string::npos) break;
        s = e + 1;
      }
      if (parts.size() == 3) {
        if (parts[0] != "*") return unsupported(spec, "a year");
        parts.erase(parts.begin());
      }
      if (parts.size() != 2) return unsupported(spec, "a date cron cannot express");
      month = component_to_cron(parts[0], 12);
      dom = component_to_cron(parts[1], 31);
      if (month.empty() || dom.empty()) return unsupported(spec, "a date cron cannot express");
    } else if (i == 0 && std::isalpha(static_cast<unsigned char>(w[0])) != 0 && w.find('/') == std::string::npos &&
               lower(w) != "utc") {
      std::string out = lower(w);
      for (size_t p; (p = out.find("..")) != std::string::npos;) out.replace(p, 2, "-");
      // Full names to the three letters cron knows: "monday" -> "mon".
      std::string shortened, item;
      for (size_t k = 0; k <= out.size(); ++k) {
        if (k == out.size() || out[k] == ',' || out[k] == '-') {
          shortened += item.substr(0, 3);
          if (k < out.size()) shortened += out[k];
          item.clear();
        } else {
          item += out[k];
        }
      }
      dow = shortened;
    } else {
      return unsupported(spec, "a time zone");
    }
  }
  if (dow != "*" && dom != "*") {
    return unsupported(spec, "both a weekday and a day of the month (cron runs when either matches)");
  }
  std::string cron = fmt::format("{} {} {} {} {}", minute, hour, dom, month, dow);
  auto parsed = config::parse_cron(cron);
  if (!parsed) return unsupported(spec, "parts cron cannot express (" + parsed.error().message() + ")");
  return cron;
}

}  // namespace blkvault::app
