// app/io_throttle.h — backup --limit-read: one token bucket (common/rate_limiter.h)
// over every snapshot read of a backup, all devices together; fixed, or adaptive
// to the I/O pressure of the production workload (Linux PSI).
//
// Adaptive mode (--limit-read auto[:MAX]; docs/ADMIN.md "Limiting backup I/O").
// At most once per kPollSeconds, checked before a read, the PSI file (default
// /proc/pressure/io, or a cgroup's io.pressure) is read and its "some avg10" —
// the share of the last 10 s in which some task waited for I/O — decides:
//   >= kHighPressurePct: the limit is halved (from the rate actually read in the
//       last interval when that is lower; plain "auto" waits for a first
//       interval with reads), not below the floor (kFloorBytesPerS,
//       or MAX when smaller), and not cut again within kHoldAfterCutSeconds,
//       because avg10 lags a cut by several seconds;
//   <  kLowPressurePct: the limit grows by kGrowthFactor per poll, up to MAX; with
//       no MAX it is lifted altogether once past kNoMaxCeilingBytesPerS;
//   in between: kept.
// The limit starts at MAX (unlimited with plain "auto"). When the file cannot be
// read or makes no sense, one warning names it and the reads run at MAX (or
// unlimited) from then on.
//
// Reads are cut into slices of at most kSliceBytes, each waiting its turn, so
// the device sees a steady rate rather than 8 MiB bursts.
// Thread-safety: before_read() and the wrapped ReadAt may be called from any
// thread; the accessors too.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "app/pipeline.h"
#include "common/cancel.h"
#include "common/error.h"
#include "common/logger.h"
#include "common/rate_limiter.h"
#include "config/values.h"

namespace blkvault::app {

inline constexpr const char* kDefaultPsiPath = "/proc/pressure/io";

struct PsiSample {
  double some_avg10 = 0;  // percent
  double full_avg10 = 0;  // percent (0 when the file has no "full" line)
};
// Parses the text of /proc/pressure/io ("some avg10=1.23 avg60=… total=…\n
// full avg10=…"). kInvalidArgument when there is no "some" line with avg10.
Result<PsiSample> parse_psi(std::string_view text);

struct ReadThrottleOptions {
  std::string spec;                   // as given: "20", "auto", "auto:200" (for reports)
  config::ReadLimit limit;
  std::string psi_path = kDefaultPsiPath;
  RateClock* clock = nullptr;         // null: steady_clock; must outlive the throttle
  Logger* log = nullptr;              // the one warning when PSI is unavailable; may be null
};

class ReadThrottle {
 public:
  static constexpr uint64_t kSliceBytes = 1 << 20;
  static constexpr double kPollSeconds = 1.0;
  static constexpr double kHighPressurePct = 20.0;
  static constexpr double kLowPressurePct = 5.0;
  static constexpr double kHoldAfterCutSeconds = 5.0;
  static constexpr double kGrowthFactor = 1.25;
  static constexpr double kFloorBytesPerS = 1e6;
  static constexpr double kNoMaxCeilingBytesPerS = 10e9;

  explicit ReadThrottle(ReadThrottleOptions options);
  ReadThrottle(const ReadThrottle&) = delete;
  ReadThrottle& operator=(const ReadThrottle&) = delete;

  // Waits until `bytes` may be read, adapting the limit first when it is time.
  // kCancelled when `cancel` is requested while waiting.
  Status before_read(uint64_t bytes, const CancelToken& cancel);
  // `read` behind this throttle. The result borrows `*this`, `read` is copied.
  ReadAt wrap(ReadAt read, const CancelToken& cancel);

  double throttled_seconds() const { return limiter_.throttled_seconds(); }
  double limit_bytes_per_s() const { return limiter_.rate(); }  // now; RateLimiter::kUnlimited when none
  // For the report: {"limit", "adaptive", "bytes_per_s", "throttled_s"} and, when
  // adaptive, {"pressure_file", "pressure_available", "slowdowns", "lowest_bytes_per_s"}.
  nlohmann::json report_json() const;
  // One line for the text report: "read limit 20 MB/s: waited 1.9s".
  std::string report_text() const;

 private:
  void adapt(double now);
  double max_rate() const;

  ReadThrottleOptions options_;
  RateClock& clock_;
  RateLimiter limiter_;
  mutable std::mutex mu_;  // the adaptive state below
  std::optional<double> last_poll_s_;
  uint64_t bytes_at_last_poll_ = 0;
  double last_cut_s_ = -1e300;
  bool pressure_available_ = true;
  std::string pressure_problem_;
  int slowdowns_ = 0;
  double lowest_ = RateLimiter::kUnlimited;
};

// "20 MB/s", "2.5 MB/s", "unlimited" (MB = 10^6 bytes).
std::string format_limit(double bytes_per_s);

// The limits one backup runs under, from BackupOptions.
struct BackupLimits {
  std::unique_ptr<ReadThrottle> read;    // null: no read limit
  std::shared_ptr<RateLimiter> upload;   // null: no upload limit
  std::string upload_spec;
  // The report's part (backup_report.h): null when there is no such limit.
  nlohmann::json read_json() const;
  nlohmann::json upload_json() const;
  std::vector<std::string> text_lines() const;
};

// kInvalidArgument "--limit-read: '0' is not a read limit: …" (or --limit-upload)
// for a bad value. The upload limiter is ctx.upload_limiter when that is set (the
// caller opened the repository with it), else a new one from opts.limit_upload;
// for a repository that is not object storage it is dropped with a warning.
Result<BackupLimits> backup_limits(const Context& ctx, const BackupOptions& opts);

}  // namespace blkvault::app
