#include "repo/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "common/file_io.h"

namespace blkvault::repo {
namespace {

std::string holder_description(int fd) {
  char buf[256] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? "another process" : s;
}

}  // namespace

Result<RepoLock> RepoLock::acquire(const std::string& repo_dir, double wait_seconds, bool name_host) {
  const std::string path = repo_dir + "/lock";
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return fail_errno(fmt::format("locking {}", path));
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(ErrorCode::kLocked,
                  fmt::format("repository {} is locked by {}{}", repo_dir, holder_description(fd.get()),
                              wait_seconds > 0 ? fmt::format(" (waited {:g} s)", wait_seconds) : std::string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::time_t now = std::time(nullptr);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::string who = name_host ? fmt::format("pid {} on host {} since {}\n", ::getpid(), host, when)
                              : fmt::format("pid {} since {}\n", ::getpid(), when);
  if (::ftruncate(fd.get(), 0) != 0) return fail_errno(fmt::format("writing {}", path));
  BLKVAULT_TRY(pwrite_full(fd.get(), {reinterpret_cast<const uint8_t*>(who.data()), who.size()}, 0, path));
  return RepoLock(std::move(fd));
}

Result<std::optional<std::string>> RepoLock::holder(const std::string& repo_dir) {
  const std::string path = repo_dir + "/lock";
  auto fd = open_file(path, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().code() == ErrorCode::kNotFound) return std::optional<std::string>();
    return tl::unexpected(std::move(fd).error());
  }
  // A shared lock is refused exactly while a writer holds its exclusive one.
  if (::flock(fd->get(), LOCK_SH | LOCK_NB) == 0) {
    ::flock(fd->get(), LOCK_UN);
    return std::optional<std::string>();
  }
  if (errno != EWOULDBLOCK) return fail_errno(fmt::format("checking the lock {}", path));
  return std::optional<std::string>(holder_description(fd->get()));
}

}  // namespace blkvault::repo
