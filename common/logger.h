// common/logger.h — the injected logging seam.
//
// Libraries never write to stdout/stderr; they take a Logger& and report through
// it. app/ provides the implementation (stderr, log file, journal) and decides the
// verbosity. NullLogger drops everything (tests, quiet paths).
// Thread-safety: implementations must be thread-safe.
#pragma once

#include <string_view>

namespace blkvault {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

class Logger {
 public:
  virtual ~Logger() = default;
  virtual void log(LogLevel level, std::string_view message) = 0;
  void debug(std::string_view m) { log(LogLevel::kDebug, m); }
  void info(std::string_view m) { log(LogLevel::kInfo, m); }
  void warning(std::string_view m) { log(LogLevel::kWarning, m); }
  void error(std::string_view m) { log(LogLevel::kError, m); }
};

class NullLogger final : public Logger {
 public:
  void log(LogLevel, std::string_view) override {}
};

}  // namespace blkvault
