#include "app/job_log.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "common/file_io.h"

namespace blkvault::app {
namespace {

// The local syslog socket: /dev/log, or BLKVAULT_SYSLOG_SOCKET (docs/CONFIG.md).
std::string syslog_socket_path() {
  const char* env = std::getenv("BLKVAULT_SYSLOG_SOCKET");
  return env != nullptr && *env ? env : "/dev/log";
}

// Sends one message to the local syslog socket in the form syslog(3) uses
// ("<PRI>Mmm dd hh:mm:ss blkvault[PID]: TEXT"): a datagram, or on a stream
// socket the message with a terminating NUL. Our own sender rather than
// syslog(3) so that a message that cannot be delivered is reported, not dropped.
Status send_syslog(int priority, std::string_view text) {
  const std::string path = syslog_socket_path();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return fail(ErrorCode::kInvalidArgument, path + ": path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
  std::string msg = fmt::format("<{}>{} blkvault[{}]: {}", LOG_DAEMON | priority, stamp, ::getpid(), text);
  for (int type : {SOCK_DGRAM, SOCK_STREAM}) {
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("syslog socket", errno);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      if (errno == EPROTOTYPE && type == SOCK_DGRAM) continue;
      return fail_errno(path, errno);
    }
    const size_t length = msg.size() + (type == SOCK_STREAM ? 1 : 0);  // the NUL ends a stream message
    if (::send(fd.get(), msg.c_str(), length, MSG_NOSIGNAL) < 0) return fail_errno(path, errno);
    return {};
  }
  return fail(ErrorCode::kIo, path + ": not a syslog socket");
}

}  // namespace

std::string_view outcome_name(JobLog::Outcome outcome) {
  switch (outcome) {
    case JobLog::Outcome::kSuccess:
      return "success";
    case JobLog::Outcome::kFailure:
      return "failure";
    case JobLog::Outcome::kSkipped:
      return "skipped";
  }
  return "failure";
}

Result<JobLog> JobLog::open(std::string job, const std::string& log_file, bool use_syslog, Output& out) {
  UniqueFd fd;
  if (!log_file.empty()) {
    auto f = open_file(log_file, O_WRONLY | O_APPEND | O_CREAT, 0640);
    if (!f) return fail(std::move(f).error().wrap("opening the log file"));
    fd = std::move(*f);
  }
  return JobLog(std::move(job), std::move(fd), use_syslog, out);
}

JobLog JobLog::syslog_only(std::string job, bool use_syslog, Output& out) {
  return JobLog(std::move(job), UniqueFd(), use_syslog, out);
}

void JobLog::write_line(std::string_view text) {
  if (!fd_) return;
  // One write(2) per line with O_APPEND: lines of concurrent runs never interleave.
  std::string line = fmt::format("{} blkvault[{}]: job {}: {}\n", format_now_rfc3339(), ::getpid(), job_, text);
  Status st = write_full(fd_.get(), {reinterpret_cast<const uint8_t*>(line.data()), line.size()}, "the log file");
  if (!st && write_problem_.empty()) write_problem_ = st.error().message();
}

void JobLog::line(std::string_view text) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) write_line(text.substr(start, end - start));
    start = end + 1;
  }
}

void JobLog::hook_output(std::string_view label, std::string_view output) {
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string_view::npos) end = output.size();
    std::string text = fmt::format("{}: {}", label, output.substr(start, end - start));
    if (fd_) {
      write_line(text);
    } else {
      out_->log(LogLevel::kInfo, fmt::format("job {}: {}", job_, text));
    }
    start = end + 1;
  }
}

void JobLog::outcome(Outcome outcome, std::string_view text) {
  std::string line = fmt::format("{}: {}", outcome_name(outcome), text);
  write_line(line);
  if (!syslog_) return;
  int priority = outcome == Outcome::kSuccess ? LOG_INFO : outcome == Outcome::kSkipped ? LOG_WARNING : LOG_ERR;
  Status sent = send_syslog(priority, fmt::format("job {}: {}", job_, line));
  // The outcome is in the log file and the exit status all the same; say there
  // why syslog did not get it (no syslog daemon, say) rather than drop it.
  if (!sent) write_line(fmt::format("syslog: {}", sent.error().message()));
}

}  // namespace blkvault::app
