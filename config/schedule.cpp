#include "config/schedule.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

namespace blkvault::config {
namespace {

constexpr std::string_view kCalendarHint =
    "expected a systemd calendar spec such as 'daily', 'Mon..Fri 02:00' or '*-*-* 02:30:00', "
    "or a cron expression of 5 fields";

tl::unexpected<Error> invalid(std::string message) { return fail(ErrorCode::kInvalidArgument, std::move(message)); }

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t pos = text.find(sep, start);
    parts.push_back(text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) return parts;
    start = pos + 1;
  }
}

std::vector<std::string_view> split_blanks(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t') ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

bool is_digits(std::string_view s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int to_int(std::string_view digits) {
  int v = 0;
  for (char c : digits) v = v * 10 + (c - '0');
  return v;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// ---- cron -------------------------------------------------------------------

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct CronField {
  std::string_view name;
  int low, high;
  const std::string_view* names;  // nullptr, or names for low, low+1, ...
  size_t name_count;
  std::string_view name_hint;
};

constexpr std::array<CronField, 5> kCronFields = {{
    {"minute", 0, 59, nullptr, 0, ""},
    {"hour", 0, 23, nullptr, 0, ""},
    {"day of month", 1, 31, nullptr, 0, ""},
    {"month", 1, 12, kMonthNames.data(), kMonthNames.size(), "a month name (jan..dec)"},
    {"day of week", 0, 7, kDayNames.data(), kDayNames.size(), "a day name (sun..sat)"},
}};

Result<int> cron_value(std::string_view token, const CronField& f) {
  if (is_digits(token)) {
    int v = to_int(token);
    if (v < f.low || v > f.high) return invalid(fmt::format("{} is out of range {}-{}", token, f.low, f.high));
    return v;
  }
  if (f.names != nullptr) {
    for (size_t i = 0; i < f.name_count; ++i) {
      if (iequals(token, f.names[i])) return f.low + static_cast<int>(i);
    }
    return invalid(fmt::format("'{}' is neither a number from {} to {} nor {}", token, f.low, f.high, f.name_hint));
  }
  if (token.empty()) return invalid("a value is missing");
  return invalid(fmt::format("'{}' is not a number from {} to {}", token, f.low, f.high));
}

// One comma-separated element: "*", "5", "1-5", "*/15", "0-30/10", "mon-fri".
Status cron_item(std::string_view item, const CronField& f, std::bitset<64>* bits) {
  if (item.empty()) return invalid("empty element in a list");
  std::string_view range = item, step_text;
  bool has_step = false;
  if (size_t slash = item.find('/'); slash != std::string_view::npos) {
    range = item.substr(0, slash);
    step_text = item.substr(slash + 1);
    has_step = true;
  }
  int first, last;
  if (range == "*") {
    first = f.low;
    last = f.high;
  } else if (size_t dash = range.find('-'); dash != std::string_view::npos) {
    BLKVAULT_TRY_ASSIGN(first, cron_value(range.substr(0, dash), f));
    BLKVAULT_TRY_ASSIGN(last, cron_value(range.substr(dash + 1), f));
    if (first > last) return invalid(fmt::format("range {} goes backwards", range));
  } else {
    BLKVAULT_TRY_ASSIGN(first, cron_value(range, f));
    if (has_step) {
      return invalid(fmt::format("'{}': a step needs a range or '*' (such as '*/{}' or '{}-{}/{}')", item, step_text,
                                 range, f.high, step_text));
    }
    last = first;
  }
  int step = 1;
  if (has_step) {
    if (!is_digits(step_text)) return invalid(fmt::format("step '{}' is not a number", step_text));
    step = to_int(step_text);
    if (step < 1 || step > f.high - f.low + 1) {
      return invalid(fmt::format("step {} is out of range 1-{}", step_text, f.high - f.low + 1));
    }
  }
  for (int v = first; v <= last; v += step) bits->set(static_cast<size_t>(v));
  return {};
}

Result<std::bitset<64>> cron_field(std::string_view text, const CronField& f) {
  std::bitset<64> bits;
  for (std::string_view item : split(text, ',')) BLKVAULT_TRY(cron_item(item, f, &bits));
  return bits;
}

template <size_t N>
std::bitset<N> narrow(const std::bitset<64>& wide) {
  std::bitset<N> out;
  for (size_t i = 0; i < N; ++i) out[i] = wide[i];
  return out;
}

// ---- systemd calendar specs ---------------------------------------------------

constexpr std::array<std::string_view, 9> kCalendarWords = {"minutely", "hourly", "daily", "weekly", "monthly",
                                                            "yearly", "annually", "quarterly", "semiannually"};
constexpr std::array<std::string_view, 7> kWeekdays = {"monday", "tuesday", "wednesday", "thursday",
                                                       "friday", "saturday", "sunday"};

// Monday = 0 .. Sunday = 6, or -1.
int weekday_index(std::string_view word) {
  for (size_t i = 0; i < kWeekdays.size(); ++i) {
    if (iequals(word, kWeekdays[i]) || iequals(word, kWeekdays[i].substr(0, 3))) return static_cast<int>(i);
  }
  return -1;
}

// "Mon", "Mon,Wed", "Mon..Fri", "Sat-Sun". Ranges run forward from Monday to
// Sunday, as systemd requires ("Sun..Tue" is refused).
Status calendar_weekdays(std::string_view token) {
  for (std::string_view item : split(token, ',')) {
    std::vector<std::string_view> ends;
    if (size_t dots = item.find(".."); dots != std::string_view::npos) {
      ends = {item.substr(0, dots), item.substr(dots + 2)};
    } else {
      ends = split(item, '-');
    }
    if (ends.size() > 2) return invalid(fmt::format("'{}' is not a weekday or a range of weekdays", item));
    int previous = -1;
    for (std::string_view day : ends) {
      int index = weekday_index(day);
      if (index < 0) return invalid(fmt::format("'{}' is not a weekday (Mon..Sun)", day));
      if (index < previous) {
        return invalid(fmt::format("weekday range {} goes backwards (weeks run Mon..Sun)", item));
      }
      previous = index;
    }
  }
  return {};
}

// One date or time component: "*", "5", "1,15", "1..5", "*/2", "0..30/10";
// seconds may have a fraction ("05.5").
Status calendar_component(std::string_view text, std::string_view what, int low, int high, bool fraction = false) {
  for (std::string_view item : split(text, ',')) {
    std::string_view range = item, step;
    if (size_t slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      step = item.substr(slash + 1);
      if (!is_digits(step) || to_int(step) < 1) {
        return invalid(fmt::format("{} repetition '/{}' is not a positive number", what, step));
      }
    }
    if (range == "*") continue;
    std::vector<std::string_view> ends;
    if (size_t dots = range.find(".."); dots != std::string_view::npos) {
      ends = {range.substr(0, dots), range.substr(dots + 2)};
    } else {
      ends = {range};
    }
    int previous = low - 1;
    for (std::string_view value : ends) {
      std::string_view whole = value;
      if (fraction) {
        if (size_t dot = value.find('.'); dot != std::string_view::npos) {
          whole = value.substr(0, dot);
          if (!is_digits(value.substr(dot + 1))) return invalid(fmt::format("{} '{}' is not a number", what, value));
        }
      }
      if (!is_digits(whole)) return invalid(fmt::format("{} '{}' is not a number", what, value));
      int v = to_int(whole);
      if (v < low || v > high) return invalid(fmt::format("{} {} is out of range {}-{}", what, value, low, high));
      if (v < previous) return invalid(fmt::format("{} range {} goes backwards", what, range));
      previous = v;
    }
  }
  return {};
}

// "2024-06-01", "*-*-01", "*-*-* ", "06-01", "*-02~03" (third-last day of February).
Status calendar_date(std::string_view token) {
  std::string_view head = token, last_days;
  bool from_end = false;
  if (size_t tilde = token.find('~'); tilde != std::string_view::npos) {
    head = token.substr(0, tilde);
    last_days = token.substr(tilde + 1);
    from_end = true;
  }
  std::vector<std::string_view> parts = split(head, '-');
  if (from_end) parts.push_back(last_days);
  if (parts.size() < 2 || parts.size() > 3) {
    return invalid(fmt::format("date '{}' is not of the form Y-M-D or M-D", token));
  }
  size_t i = 0;
  if (parts.size() == 3) BLKVAULT_TRY(calendar_component(parts[i++], "year", 1970, 2199));
  BLKVAULT_TRY(calendar_component(parts[i++], "month", 1, 12));
  BLKVAULT_TRY(calendar_component(parts[i], "day", 1, 31));
  return {};
}

// "02:00", "02:00:00", "*:0/15", "08..18:00".
Status calendar_time(std::string_view token) {
  std::vector<std::string_view> parts = split(token, ':');
  if (parts.size() < 2 || parts.size() > 3) {
    return invalid(fmt::format("time '{}' is not of the form H:M or H:M:S", token));
  }
  BLKVAULT_TRY(calendar_component(parts[0], "hour", 0, 23));
  BLKVAULT_TRY(calendar_component(parts[1], "minute", 0, 59));
  if (parts.size() == 3) BLKVAULT_TRY(calendar_component(parts[2], "second", 0, 59, /*fraction=*/true));
  return {};
}

// "UTC", or an IANA zone name such as "Europe/Berlin".
bool is_timezone(std::string_view token) {
  if (token == "UTC") return true;
  std::vector<std::string_view> parts = split(token, '/');
  if (parts.size() < 2) return false;
  for (std::string_view p : parts) {
    if (p.empty()) return false;
    for (char c : p) {
      bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                c == '+';
      if (!ok) return false;
    }
  }
  return (parts[0][0] >= 'A' && parts[0][0] <= 'Z');
}

}  // namespace

Result<CronSpec> parse_cron(std::string_view text) {
  std::vector<std::string_view> fields = split_blanks(text);
  if (fields.size() != 5) {
    return invalid(fmt::format("a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {}",
                               fields.size()));
  }
  std::array<std::bitset<64>, 5> bits;
  for (size_t i = 0; i < 5; ++i) {
    auto r = cron_field(fields[i], kCronFields[i]);
    if (!r) return fail(std::move(r).error().wrap(fmt::format("cron field {} ({})", i + 1, kCronFields[i].name)));
    bits[i] = *r;
  }
  CronSpec spec;
  spec.minutes = narrow<60>(bits[0]);
  spec.hours = narrow<24>(bits[1]);
  spec.days_of_month = narrow<32>(bits[2]);
  spec.months = narrow<13>(bits[3]);
  if (bits[4][7]) bits[4].set(0);  // 7 is Sunday too
  spec.days_of_week = narrow<7>(bits[4]);
  spec.day_of_month_restricted = fields[2][0] != '*';
  spec.day_of_week_restricted = fields[4][0] != '*';
  return spec;
}

Status check_calendar(std::string_view text) {
  std::vector<std::string_view> tokens = split_blanks(text);
  if (tokens.empty()) return invalid(fmt::format("empty schedule ({})", kCalendarHint));
  if (tokens.size() == 1 || (tokens.size() == 2 && is_timezone(tokens[1]))) {
    for (std::string_view word : kCalendarWords) {
      if (iequals(tokens[0], word)) return {};
    }
  }
  size_t i = 0;
  bool any = false;
  auto first_is_letter = [](std::string_view t) {
    return (t[0] >= 'A' && t[0] <= 'Z') || (t[0] >= 'a' && t[0] <= 'z');
  };
  if (first_is_letter(tokens[0])) {
    auto st = calendar_weekdays(tokens[0]);
    std::string_view word = tokens[0].substr(0, std::min(tokens[0].find_first_of(",.-"), tokens[0].size()));
    if (!st && tokens.size() == 1 && weekday_index(word) < 0) {
      return invalid(fmt::format("'{}' is neither a shorthand (minutely, hourly, daily, weekly, monthly, yearly, "
                                 "quarterly, semiannually) nor a weekday ({})",
                                 tokens[0], kCalendarHint));
    }
    BLKVAULT_TRY(st);
    ++i;
    any = true;
  }
  if (i < tokens.size() && tokens[i].find(':') == std::string_view::npos &&
      (tokens[i].find('-') != std::string_view::npos || tokens[i].find('~') != std::string_view::npos)) {
    BLKVAULT_TRY(calendar_date(tokens[i++]));
    any = true;
  }
  if (i < tokens.size() && tokens[i].find(':') != std::string_view::npos) {
    BLKVAULT_TRY(calendar_time(tokens[i++]));
    any = true;
  }
  if (any && i + 1 == tokens.size() && is_timezone(tokens[i])) ++i;
  if (i < tokens.size() || !any) {
    return invalid(fmt::format("unexpected '{}' ({})", i < tokens.size() ? tokens[i] : text, kCalendarHint));
  }
  return {};
}

Result<Schedule> parse_schedule(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  Schedule s;
  s.text = std::string(text);
  if (!text.empty() && text[0] == '@') {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kNicknames = {{
        {"@hourly", "0 * * * *"},
        {"@daily", "0 0 * * *"},
        {"@midnight", "0 0 * * *"},
        {"@weekly", "0 0 * * 0"},
        {"@monthly", "0 0 1 * *"},
        {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"},
    }};
    for (const auto& [nick, expansion] : kNicknames) {
      if (text == nick) {
        s.kind = Schedule::Kind::kCron;
        BLKVAULT_TRY_ASSIGN(s.cron, parse_cron(expansion));
        return s;
      }
    }
    return invalid(fmt::format("unknown cron nickname '{}' (known: @hourly, @daily, @midnight, @weekly, @monthly, "
                               "@yearly, @annually)",
                               text));
  }
  if (split_blanks(text).size() == 5) {
    s.kind = Schedule::Kind::kCron;
    BLKVAULT_TRY_ASSIGN(s.cron, parse_cron(text));
    return s;
  }
  s.kind = Schedule::Kind::kCalendar;
  auto st = check_calendar(text);
  if (!st) return fail(std::move(st).error().wrap("calendar spec"));
  return s;
}

}  // namespace blkvault::config
