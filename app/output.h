// app/output.h — everything blkvault prints goes through here.
//
// Output: results go to stdout (human text, or one JSON object with --json);
// messages and progress go to stderr. Errors are one line, "blkvault: <message>".
//
// Progress: drawn only when stderr is a terminal and not --quiet — one live line
// per task (bytes done/total, rate, ETA), redrawn at most 4 times a second. When
// stderr is not a terminal, a plain line every 10 s (so cron logs show life
// without flooding); nothing with --quiet. With --json-progress, one JSON object
// per line on stderr instead, at most once a second per task.
//
// Thread-safety: Output is thread-safe (one mutex); progress may be reported
// from pipeline threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/logger.h"

namespace blkvault::app {

struct OutputOptions {
  bool quiet = false;          // no progress, no informational messages
  bool json = false;           // stdout is one JSON object
  bool json_progress = false;  // progress as JSON lines on stderr
  bool verbose = false;        // debug messages
};

class Output final : public Logger {
 public:
  explicit Output(OutputOptions options, std::FILE* out = stdout, std::FILE* err = stderr);
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  const OutputOptions& options() const { return options_; }

  // Human result text on stdout (suppressed with --json).
  void result(std::string_view text);
  // The --json result object on stdout (only with --json).
  void result_json(const nlohmann::json& object);
  // An informational line on stderr (suppressed with --quiet and --json).
  void note(std::string_view text);
  // "blkvault: <message>" on stderr, always.
  void error(const Error& error);
  void error_line(std::string_view message);

  // Logger: warnings and errors always reach stderr, info only when not quiet,
  // debug only with --verbose.
  void log(LogLevel level, std::string_view message) override;

  // Progress of one named task (e.g. a device being backed up). Safe to call
  // often: drawing is rate-limited.
  int progress_begin(std::string name, uint64_t total_bytes);
  void progress_update(int task, uint64_t done_bytes);
  void progress_end(int task);

 private:
  struct Task {
    std::string name;
    uint64_t total = 0, done = 0;
    std::chrono::steady_clock::time_point start, last_emit;
    bool active = false;
  };
  void draw_locked(bool force);
  void clear_live_locked();
  std::string task_line(const Task& t, std::chrono::steady_clock::time_point now) const;

  OutputOptions options_;
  std::FILE* out_;
  std::FILE* err_;
  bool tty_;
  std::mutex mutex_;
  std::vector<Task> tasks_;
  int live_lines_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

// A Unix time in milliseconds as "2026-11-25 06:00:00" (UTC), or in the local
// time zone with its abbreviation ("2026-11-25 07:00:00 CET"); "-" for 0.
std::string format_time_utc(int64_t ms);
std::string format_time_local(int64_t ms);
// Now in the local time zone as RFC 3339 with its offset ("2026-11-25T02:30:04+01:00").
std::string format_now_rfc3339();

// "1.5 GiB", "512 B"; "123.4 MiB/s"; "1h02m03s".
std::string format_bytes(uint64_t bytes);
std::string format_rate(double bytes_per_second);
std::string format_duration(double seconds);

// Parses "4G", "512M", "1T", "65536", "1.5GiB" (binary units) into bytes.
Result<uint64_t> parse_size(std::string_view text);

}  // namespace blkvault::app
