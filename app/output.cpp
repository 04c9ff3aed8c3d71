#include "app/output.h"

#include <unistd.h>

#include <cmath>
#include <ctime>

#include <fmt/format.h>

namespace blkvault::app {

using Clock = std::chrono::steady_clock;

Output::Output(OutputOptions options, std::FILE* out, std::FILE* err)
    : options_(options), out_(out), err_(err), tty_(::isatty(::fileno(err)) == 1) {}

void Output::result(std::string_view text) {
  if (options_.json) return;
  std::lock_guard lock(mutex_);
  clear_live_locked();
  std::fwrite(text.data(), 1, text.size(), out_);
  if (text.empty() || text.back() != '\n') std::fputc('\n', out_);
  std::fflush(out_);
  draw_locked(true);
}

void Output::result_json(const nlohmann::json& object) {
  if (!options_.json) return;
  std::lock_guard lock(mutex_);
  std::string s = object.dump(2);
  std::fprintf(out_, "%s\n", s.c_str());
  std::fflush(out_);
}

void Output::note(std::string_view text) {
  if (options_.quiet || options_.json) return;
  std::lock_guard lock(mutex_);
  clear_live_locked();
  std::fprintf(err_, "%.*s\n", static_cast<int>(text.size()), text.data());
  draw_locked(true);
}

void Output::error(const Error& error) { error_line(error.message()); }

void Output::error_line(std::string_view message) {
  std::lock_guard lock(mutex_);
  clear_live_locked();
  std::fprintf(err_, "blkvault: %.*s\n", static_cast<int>(message.size()), message.data());
  std::fflush(err_);
}

void Output::log(LogLevel level, std::string_view message) {
  switch (level) {
    case LogLevel::kDebug:
      if (!options_.verbose) return;
      break;
    case LogLevel::kInfo:
      if (options_.quiet || options_.json) return;
      break;
    case LogLevel::kWarning:
    case LogLevel::kError:
      break;
  }
  const char* prefix = level == LogLevel::kWarning ? "warning: " : level == LogLevel::kError ? "error: " : "";
  std::lock_guard lock(mutex_);
  clear_live_locked();
  std::fprintf(err_, "%s%.*s\n", prefix, static_cast<int>(message.size()), message.data());
  draw_locked(true);
}

int Output::progress_begin(std::string name, uint64_t total_bytes) {
  std::lock_guard lock(mutex_);
  Task t;
  t.name = std::move(name);
  t.total = total_bytes;
  t.start = t.last_emit = Clock::now();
  t.active = true;
  tasks_.push_back(std::move(t));
  draw_locked(true);
  return static_cast<int>(tasks_.size() - 1);
}

void Output::progress_update(int task, uint64_t done_bytes) {
  std::lock_guard lock(mutex_);
  if (task < 0 || task >= static_cast<int>(tasks_.size())) return;
  tasks_[task].done = done_bytes;
  draw_locked(false);
}

void Output::progress_end(int task) {
  std::lock_guard lock(mutex_);
  if (task < 0 || task >= static_cast<int>(tasks_.size())) return;
  Task& t = tasks_[task];
  t.done = std::max(t.done, t.total);
  draw_locked(true);
  t.active = false;
  if (tty_ && !options_.quiet && !options_.json_progress) {
    // The finished task's last line stays on screen; forget it as a live line.
    clear_live_locked();
    std::fprintf(err_, "%s\n", task_line(t, Clock::now()).c_str());
    draw_locked(true);
  }
}

std::string Output::task_line(const Task& t, Clock::time_point now) const {
  double secs = std::chrono::duration<double>(now - t.start).count();
  double rate = secs > 0 ? static_cast<double>(t.done) / secs : 0;
  std::string line = fmt::format("{}: {} / {}", t.name, format_bytes(t.done), format_bytes(t.total));
  if (t.total > 0) line += fmt::format(" ({:.0f}%)", 100.0 * static_cast<double>(t.done) / static_cast<double>(t.total));
  line += fmt::format(", {}", format_rate(rate));
  if (t.active && rate > 0 && t.total > t.done) {
    line += fmt::format(", ETA {}", format_duration(static_cast<double>(t.total - t.done) / rate));
  } else if (!t.active || t.done >= t.total) {
    line += fmt::format(", {}", format_duration(secs));
  }
  return line;
}

void Output::clear_live_locked() {
  if (live_lines_ == 0) return;
  // Move up over the live lines and clear them.
  for (int i = 0; i < live_lines_; ++i) std::fputs("\x1b[1A\x1b[2K", err_);
  std::fputc('\r', err_);
  live_lines_ = 0;
}

void Output::draw_locked(bool force) {
  if (options_.quiet) return;
  auto now = Clock::now();
  if (options_.json_progress) {
    for (auto& t : tasks_) {
      if (!t.active) continue;
      if (!force && now - t.last_emit < std::chrono::seconds(1)) continue;
      t.last_emit = now;
      nlohmann::json ev = {{"event", "progress"}, {"task", t.name}, {"done_bytes", t.done}, {"total_bytes", t.total}};
      std::fprintf(err_, "%s\n", ev.dump().c_str());
    }
    std::fflush(err_);
    return;
  }
  if (options_.json) return;
  if (!tty_) {
    for (auto& t : tasks_) {
      if (!t.active || now - t.last_emit < std::chrono::seconds(10)) continue;
      t.last_emit = now;
      std::fprintf(err_, "%s\n", task_line(t, now).c_str());
    }
    std::fflush(err_);
    return;
  }
  if (!force && now - last_draw_ < std::chrono::milliseconds(250)) return;
  last_draw_ = now;
  clear_live_locked();
  for (auto& t : tasks_) {
    if (!t.active) continue;
    std::fprintf(err_, "%s\n", task_line(t, now).c_str());
    ++live_lines_;
  }
  std::fflush(err_);
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

std::string format_rate(double bps) { return format_bytes(static_cast<uint64_t>(std::max(0.0, bps))) + "/s"; }

std::string format_duration(double seconds) {
  if (seconds < 10) return fmt::format("{:.2f}s", seconds);
  auto s = static_cast<uint64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60);
}

Result<uint64_t> parse_size(std::string_view text) {
  auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid size '{}': expected a number with an optional unit K, M, G, T (powers of 1024)", text));
  };
  if (text.empty()) return bad();
  size_t i = 0;
  uint64_t whole = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (whole > (UINT64_MAX - 9) / 10) return bad();
    whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
    ++i;
  }
  if (i == 0) return bad();
  double frac = 0, scale = 0.1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      frac += scale * (text[i] - '0');
      scale /= 10;
      ++i;
    }
    if (i == start) return bad();
  }
  std::string unit(text.substr(i));
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  uint64_t mult;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KB" || unit == "KIB") mult = 1ull << 10;
  else if (unit == "M" || unit == "MB" || unit == "MIB") mult = 1ull << 20;
  else if (unit == "G" || unit == "GB" || unit == "GIB") mult = 1ull << 30;
  else if (unit == "T" || unit == "TB" || unit == "TIB") mult = 1ull << 40;
  else return bad();
  if (whole > UINT64_MAX / mult) return bad();
  uint64_t value = whole * mult + static_cast<uint64_t>(frac * static_cast<double>(mult));
  if (mult == 1 && frac != 0) return bad();
  return value;
}

namespace {
std::string format_time(int64_t ms, bool local) {
  if (ms <= 0) return "-";
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  if (local) {
    localtime_r(&secs, &tm);
  } else {
    gmtime_r(&secs, &tm);
  }
  char buf[48];
  std::strftime(buf, sizeof buf, local ? "%Y-%m-%d %H:%M:%S %Z" : "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}
}  // namespace

std::string format_time_utc(int64_t ms) { return format_time(ms, false); }
std::string format_time_local(int64_t ms) { return format_time(ms, true); }

std::string format_now_rfc3339() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
  std::string s = buf;
  if (s.size() >= 5) s.insert(s.size() - 2, ":");  // +0100 -> +01:00
  return s;
}

}  // namespace blkvault::app
