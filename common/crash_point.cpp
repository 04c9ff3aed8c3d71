#include "common/crash_point.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <cstdlib>
#include <string>

namespace blkvault {
namespace {

struct Config {
  long kill_at = 0;
  const char* trace = nullptr;
  Config() {
    if (const char* s = std::getenv("BLKVAULT_CRASH_AT")) kill_at = std::strtol(s, nullptr, 10);
    trace = std::getenv("BLKVAULT_CRASH_TRACE");
  }
};

const Config& config() {
  static const Config c;
  return c;
}

std::atomic<long> g_count{0};

// BLKVAULT_CRASH_AFTER_MS=N: SIGKILL after N ms of running, wherever the
// process is (the crash tests' "random moment").
struct KillTimer {
  KillTimer() {
    const char* s = std::getenv("BLKVAULT_CRASH_AFTER_MS");
    if (s == nullptr) return;
    const long ms = std::strtol(s, nullptr, 10);
    std::thread([ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      ::kill(::getpid(), SIGKILL);
    }).detach();
  }
};
const KillTimer g_kill_timer;

}  // namespace

void crash_point(std::string_view what) {
  const Config& c = config();
  if (c.kill_at <= 0 && c.trace == nullptr) return;
  const long n = ++g_count;
  if (c.trace != nullptr) {
    std::string line = std::to_string(n) + " " + std::string(what) + "\n";
    int fd = ::open(c.trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      (void)!::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  if (n == c.kill_at) ::kill(::getpid(), SIGKILL);
}

}  // namespace blkvault
