#include "app/hook_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "common/unique_fd.h"

extern char** environ;

namespace blkvault::app {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxOutput = 1 << 20;
constexpr auto kKillGrace = std::chrono::seconds(5);
constexpr const char* kSecretVariables[] = {"BLKVAULT_PASSWORD", "BLKVAULT_NEW_PASSWORD"};

std::vector<std::string> hook_environment(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const char* secret : kSecretVariables) vars.erase(secret);
  for (const auto& kv : extra) {
    auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

// Reads what is available without blocking; false at end of file.
bool read_available(int fd, std::string& into) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      if (into.size() < kMaxOutput) into.append(buf, std::min(static_cast<size_t>(n), kMaxOutput - into.size()));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0;  // EAGAIN: more may come; 0: end of file
  }
}

struct Pipes {
  UniqueFd out_read, out_write, in_read, in_write;
};

Result<Pipes> make_pipes(bool with_stdin) {
  Pipes p;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail_errno("creating a pipe");
  p.out_read.reset(fds[0]);
  p.out_write.reset(fds[1]);
  ::fcntl(p.out_read.get(), F_SETFL, O_NONBLOCK);
  if (with_stdin) {
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail_errno("creating a pipe");
    p.in_read.reset(fds[0]);
    p.in_write.reset(fds[1]);
    ::fcntl(p.in_write.get(), F_SETFL, O_NONBLOCK);
  }
  return p;
}

}  // namespace

std::string HookCommand::describe() const {
  if (argv.empty()) return "\"" + shell + "\"";
  std::string out = "[";
  for (size_t i = 0; i < argv.size(); ++i) out += (i ? ", \"" : "\"") + argv[i] + "\"";
  return out + "]";
}

std::string HookResult::outcome() const {
  if (timed_out) {
    if (timeout_ms % 1000 == 0) return fmt::format("was killed after its timeout of {}s", timeout_ms / 1000);
    return fmt::format("was killed after its timeout of {}ms", timeout_ms);
  }
  if (cancelled) return "was killed because blkvault was interrupted";
  if (exit_status > 128) return fmt::format("was killed by signal {}", exit_status - 128);
  return fmt::format("exited with status {}", exit_status);
}

Result<HookResult> run_hook(const HookCommand& command, const HookRun& how) {
  std::vector<std::string> argv = command.argv;
  if (argv.empty()) argv = {"/bin/sh", "-c", command.shell};
  if (argv.empty() || argv[0].empty()) return fail(ErrorCode::kInternal, "run_hook: empty command");
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::vector<std::string> env = hook_environment(how.env);
  std::vector<char*> cenv;
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  BLKVAULT_TRY_ASSIGN(Pipes pipes, make_pipes(!how.stdin_text.empty()));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (pipes.in_read) {
    posix_spawn_file_actions_adddup2(&actions, pipes.in_read.get(), STDIN_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, pipes.out_write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipes.out_write.get(), STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so a timeout kills the hook's children too; the
  // default signal dispositions, as blkvault ignores SIGPIPE.
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  const auto t0 = Clock::now();
  int rc = ::posix_spawnp(&pid, cargv[0], &actions, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return fail_errno(fmt::format("starting {}", argv[0]), rc);
  pipes.out_write.reset();
  pipes.in_read.reset();
  if (pipes.in_write) {
    // Small texts (the on-failure JSON) fit in the pipe; a command that does
    // not read them is no reason to block.
    ssize_t n = ::write(pipes.in_write.get(), how.stdin_text.data(), how.stdin_text.size());
    (void)n;
    pipes.in_write.reset();
  }

  HookResult result;
  result.timeout_ms = how.timeout_ms;
  const auto deadline = t0 + std::chrono::milliseconds(how.timeout_ms);
  std::optional<Clock::time_point> kill_at;  // set once SIGTERM was sent
  bool exited = false, eof = false, killed_hard = false;
  int status = 0;
  for (;;) {
    if (!exited) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) exited = true;
    }
    if (exited) {
      if (!eof) read_available(pipes.out_read.get(), result.output);
      break;
    }
    const auto now = Clock::now();
    const bool cancel = how.cancel != nullptr && how.cancel->cancelled();
    if (!kill_at && (now >= deadline || cancel)) {
      result.timed_out = !cancel;
      result.cancelled = cancel;
      ::kill(-pid, SIGTERM);
      kill_at = now + kKillGrace;
    } else if (kill_at && !killed_hard && now >= *kill_at) {
      ::kill(-pid, SIGKILL);
      killed_hard = true;
    }
    if (eof) {
      ::usleep(20'000);
      continue;
    }
    struct pollfd pfd = {pipes.out_read.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, 50);
    if (r > 0) eof = !read_available(pipes.out_read.get(), result.output);
  }
  // A killed hook's group goes entirely, stragglers included.
  if (kill_at) ::kill(-pid, SIGKILL);
  result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace blkvault::app
