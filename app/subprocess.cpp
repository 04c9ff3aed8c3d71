#include "app/subprocess.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "common/unique_fd.h"

extern char** environ;

namespace blkvault::app {

bool program_available(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

Result<ProcessResult> run_process(const std::vector<std::string>& argv, bool capture_stdout, bool quiet_stdout) {
  if (argv.empty()) return fail(ErrorCode::kInternal, "run_process: empty argument vector");
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  UniqueFd read_end, write_end;
  if (capture_stdout) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail_errno("creating a pipe");
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  } else if (quiet_stdout) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  }
  pid_t pid;
  int rc = ::posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return fail_errno(fmt::format("starting {}", argv[0]), rc);
  write_end.reset();

  ProcessResult result;
  if (capture_stdout) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(read_end.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      result.stdout_text.append(buf, static_cast<size_t>(n));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail_errno(fmt::format("waiting for {}", argv[0]));
  }
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace blkvault::app
