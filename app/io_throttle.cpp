#include "app/io_throttle.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "app/output.h"
#include "repo/s3_storage.h"

namespace blkvault::app {
namespace {

// The value of "avg10=" on the line that starts with `kind`, or nullopt.
std::optional<double> avg10_of(std::string_view text, std::string_view kind) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind(kind, 0) != 0 || line.size() <= kind.size() || line[kind.size()] != ' ') continue;
    const size_t at = line.find(" avg10=");
    if (at == std::string_view::npos) return std::nullopt;
    std::string value(line.substr(at + 7, line.find(' ', at + 7) - (at + 7)));
    char* stop = nullptr;
    errno = 0;
    const double v = std::strtod(value.c_str(), &stop);
    if (value.empty() || *stop != '\0' || errno != 0 || !std::isfinite(v) || v < 0 || v > 100) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream f(path);  // /proc and cgroup files report size 0: read to the end
  if (!f) return fail(Error::from_errno("cannot read " + path, errno));
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

Result<PsiSample> parse_psi(std::string_view text) {
  auto some = avg10_of(text, "some");
  if (!some) return fail(ErrorCode::kInvalidArgument, "no 'some avg10=' line");
  PsiSample s;
  s.some_avg10 = *some;
  s.full_avg10 = avg10_of(text, "full").value_or(0);
  return s;
}

std::string format_limit(double bytes_per_s) {
  if (std::isinf(bytes_per_s)) return "unlimited";
  return fmt::format("{:g} MB/s", std::round(bytes_per_s / 1e4) / 100);
}

ReadThrottle::ReadThrottle(ReadThrottleOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : RateClock::steady()),
      limiter_(max_rate(), clock_) {}

double ReadThrottle::max_rate() const {
  return options_.limit.max_bytes_per_s > 0 ? options_.limit.max_bytes_per_s : RateLimiter::kUnlimited;
}

void ReadThrottle::adapt(double now) {
  std::lock_guard g(mu_);
  if (!pressure_available_) return;
  if (!last_poll_s_) {  // the first read: the interval starts now
    last_poll_s_ = now;
    bytes_at_last_poll_ = limiter_.bytes_passed();
  } else if (now - *last_poll_s_ < kPollSeconds) {
    return;
  }
  const double elapsed = now - *last_poll_s_;
  const uint64_t passed = limiter_.bytes_passed();
  const double observed = elapsed > 0 ? static_cast<double>(passed - bytes_at_last_poll_) / elapsed : 0;
  last_poll_s_ = now;
  bytes_at_last_poll_ = passed;

  auto text = read_small_file(options_.psi_path);
  Result<PsiSample> psi = text ? parse_psi(*text) : Result<PsiSample>(fail(std::move(text).error()));
  if (!psi) {
    pressure_available_ = false;
    pressure_problem_ = text ? options_.psi_path + ": " + psi.error().message() : psi.error().message();
    limiter_.set_rate(max_rate());
    if (options_.log != nullptr) {
      const double top = max_rate();
      options_.log->warning(fmt::format("--limit-read {}: I/O pressure is unavailable ({}): reading {}", options_.spec,
                                        pressure_problem_,
                                        std::isinf(top) ? "without a limit" : "at " + format_limit(top)));
    }
    return;
  }
  const double limit = limiter_.rate();
  const double top = max_rate();
  const double floor = std::min(kFloorBytesPerS, top);
  double next = limit;
  if (psi->some_avg10 >= kHighPressurePct) {
    if (now - last_cut_s_ < kHoldAfterCutSeconds) return;
    const double base = observed > 0 ? std::min(limit, observed) : limit;
    if (std::isinf(base)) return;  // plain auto before anything was read: cut at the next poll
    next = std::max(floor, base / 2);
    last_cut_s_ = now;
    ++slowdowns_;
  } else if (psi->some_avg10 < kLowPressurePct && !std::isinf(limit)) {
    next = limit * kGrowthFactor;
    if (next >= top) next = top;
    if (std::isinf(top) && next > kNoMaxCeilingBytesPerS) next = RateLimiter::kUnlimited;
  }
  if (next != limit) limiter_.set_rate(next);
  lowest_ = std::min(lowest_, next);
}

Status ReadThrottle::before_read(uint64_t bytes, const CancelToken& cancel) {
  if (options_.limit.adaptive) adapt(clock_.now_s());
  return limiter_.acquire(bytes, &cancel);
}

ReadAt ReadThrottle::wrap(ReadAt read, const CancelToken& cancel) {
  return [this, read = std::move(read), &cancel](uint64_t offset, std::span<uint8_t> data) -> Status {
    while (!data.empty()) {
      const size_t n = std::min<size_t>(kSliceBytes, data.size());
      BLKVAULT_TRY(before_read(n, cancel));
      BLKVAULT_TRY(read(offset, data.first(n)));
      offset += n;
      data = data.subspan(n);
    }
    return {};
  };
}

nlohmann::json ReadThrottle::report_json() const {
  const double top = max_rate();
  nlohmann::json j = {{"limit", options_.spec},
                      {"adaptive", options_.limit.adaptive},
                      {"bytes_per_s", std::isinf(top) ? nlohmann::json(nullptr) : nlohmann::json(top)},
                      {"throttled_s", throttled_seconds()}};
  if (options_.limit.adaptive) {
    std::lock_guard g(mu_);
    j["pressure_file"] = options_.psi_path;
    j["pressure_available"] = pressure_available_;
    j["slowdowns"] = slowdowns_;
    j["lowest_bytes_per_s"] = std::isinf(lowest_) ? nlohmann::json(nullptr) : nlohmann::json(lowest_);
  }
  return j;
}

std::string ReadThrottle::report_text() const {
  const std::string waited = format_duration(throttled_seconds());
  if (!options_.limit.adaptive) return fmt::format("read limit {}: waited {}", format_limit(max_rate()), waited);
  std::lock_guard g(mu_);
  const std::string top = options_.limit.max_bytes_per_s > 0 ? ", at most " + format_limit(max_rate()) : "";
  if (!pressure_available_) {
    return fmt::format("read limit auto{}: waited {}; I/O pressure unavailable ({})", top, waited, pressure_problem_);
  }
  if (slowdowns_ == 0) return fmt::format("read limit auto{}: waited {}; never slowed by I/O pressure", top, waited);
  return fmt::format("read limit auto{}: waited {}; slowed {} time{} by I/O pressure, to {} at the lowest", top,
                     waited, slowdowns_, slowdowns_ == 1 ? "" : "s", format_limit(lowest_));
}

nlohmann::json BackupLimits::read_json() const { return read ? read->report_json() : nlohmann::json(nullptr); }

nlohmann::json BackupLimits::upload_json() const {
  if (!upload) return nullptr;
  return {{"limit", upload_spec}, {"bytes_per_s", upload->rate()}, {"throttled_s", upload->throttled_seconds()}};
}

std::vector<std::string> BackupLimits::text_lines() const {
  std::vector<std::string> lines;
  if (read) lines.push_back(read->report_text());
  if (upload) {
    lines.push_back(fmt::format("upload limit {}: waited {}", format_limit(upload->rate()),
                                format_duration(upload->throttled_seconds())));
  }
  return lines;
}

Result<BackupLimits> backup_limits(const Context& ctx, const BackupOptions& opts) {
  BackupLimits limits;
  if (!opts.limit_read.empty()) {
    auto parsed = config::parse_read_limit(opts.limit_read);
    if (!parsed) return fail(std::move(parsed).error().wrap("--limit-read"));
    if (!parsed->adaptive && !opts.psi_file.empty()) {
      return fail(ErrorCode::kInvalidArgument, "--psi-file is only used with --limit-read auto[:MAX]");
    }
    ReadThrottleOptions o;
    o.spec = opts.limit_read;
    o.limit = *parsed;
    if (!opts.psi_file.empty()) o.psi_path = opts.psi_file;
    o.log = &ctx.out;
    limits.read = std::make_unique<ReadThrottle>(std::move(o));
  } else if (!opts.psi_file.empty()) {
    return fail(ErrorCode::kInvalidArgument, "--psi-file is only used with --limit-read auto[:MAX]");
  }
  if (opts.limit_upload.empty()) return limits;
  auto rate = config::parse_rate(opts.limit_upload);
  if (!rate) return fail(std::move(rate).error().wrap("--limit-upload"));
  if (!repo::is_remote_repository(ctx.repo)) {
    ctx.out.warning(fmt::format("--limit-upload {}: {} is not object storage; the limit applies only to s3: "
                                "repositories and is ignored",
                                opts.limit_upload, ctx.repo));
    return limits;
  }
  limits.upload_spec = opts.limit_upload;
  limits.upload = ctx.upload_limiter ? ctx.upload_limiter : std::make_shared<RateLimiter>(*rate);
  return limits;
}

}  // namespace blkvault::app
