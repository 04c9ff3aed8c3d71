#include "app/cli_support.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace blkvault::test {
namespace {

std::string drain(int fd) {
  std::string s;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

}  // namespace

CliRun run_blkvault(const std::vector<std::string>& args, const std::vector<std::string>& env,
                    const std::string& stdin_path, const std::string& host_name) {
  char out_tmpl[] = "/tmp/blkvault-out-XXXXXX";
  char err_tmpl[] = "/tmp/blkvault-err-XXXXXX";
  int out_fd = ::mkstemp(out_tmpl);
  int err_fd = ::mkstemp(err_tmpl);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Another simulated host: its own UTS namespace and host name (needs root).
    if (!host_name.empty() && (::unshare(CLONE_NEWUTS) != 0 || ::sethostname(host_name.data(), host_name.size()) != 0)) {
      _exit(126);
    }
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    if (!stdin_path.empty()) {
      int in = ::open(stdin_path.c_str(), O_RDONLY);
      ::dup2(in, 0);
    } else {
      int in = ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
    }
    ::unsetenv("BLKVAULT_REPO");
    ::unsetenv("BLKVAULT_MODULE");
    for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> argv;
    std::string bin = BLKVAULT_BINARY;
    argv.push_back(bin.data());
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CliRun r;
  r.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::lseek(out_fd, 0, SEEK_SET);
  ::lseek(err_fd, 0, SEEK_SET);
  r.out = drain(out_fd);
  r.err = drain(err_fd);
  ::close(out_fd);
  ::close(err_fd);
  ::unlink(out_tmpl);
  ::unlink(err_tmpl);
  return r;
}

void write_random_file(const std::string& path, uint64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::vector<uint64_t> buf(1 << 14);
  for (uint64_t done = 0; done < size;) {
    for (auto& v : buf) v = rng();
    uint64_t n = std::min<uint64_t>(buf.size() * 8, size - done);
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    done += n;
  }
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace blkvault::test
