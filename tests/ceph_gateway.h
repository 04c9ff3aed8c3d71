// tests/ceph_gateway.h — a real S3 object store for tests: a single-node Ceph
// cluster with the RADOS Gateway, started by ../shared/ceph-rgw/start.sh
// (override the directory with BLKVAULT_CEPH_RGW_DIR) in a temporary
// directory, once per test process, on a block of 100 free ports chosen from
// the pid (so test processes running in parallel each get their own; 20000-31999,
// below the kernel's ephemeral range), and stopped at exit.
//
// BLKVAULT_TEST_S3_ENDPOINT (with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
// uses a gateway that is already running instead, e.g. one started by a CI
// script for the whole test run.
// When the Ceph packages are missing, scripts/install-ceph-deps is tried (it
// needs root); when they still cannot be had, CephGateway::get returns null
// with the reason, and tests skip printing it:
//   auto* gw = test::CephGateway::get(&why); if (gw == nullptr) GTEST_SKIP() << why;
// get() also exports AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_DEFAULT_REGION for the code under test and its child processes.
// Thread-safety: get() may be called from any thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

namespace blkvault::test {

class CephGateway {
 public:
  static CephGateway* get(std::string* why) {
    static std::mutex mu;
    static CephGateway* gw = nullptr;
    static std::string failure;
    std::lock_guard g(mu);
    if (gw == nullptr && failure.empty()) {
      auto* candidate = new CephGateway();
      failure = candidate->start();
      if (failure.empty()) {
        gw = candidate;
        std::atexit([] { gw->stop(); });
      } else {
        delete candidate;
      }
    }
    if (gw == nullptr && why != nullptr) *why = "no Ceph gateway: " + failure;
    if (gw != nullptr) gw->export_env();
    return gw;
  }

  const std::string& endpoint() const { return endpoint_; }  // "http://127.0.0.1:PORT"
  const std::string& access_key() const { return access_key_; }
  const std::string& secret_key() const { return secret_key_; }
  const std::string& dir() const { return dir_; }
  // False for a gateway this process did not start (BLKVAULT_TEST_S3_ENDPOINT).
  bool can_restart() const { return !external_; }

  // A bucket name no other test of this run uses (created by whoever uses it first).
  std::string new_bucket() {
    static std::atomic<int> n{0};
    return "t" + std::to_string(::getpid()) + "-" + std::to_string(n++);
  }
  // "s3:http://127.0.0.1:PORT/BUCKET[/PREFIX]"
  std::string repo_url(const std::string& bucket, const std::string& prefix = "") const {
    return "s3:" + endpoint_ + "/" + bucket + (prefix.empty() ? "" : "/" + prefix);
  }
  int port() const { return std::stoi(endpoint_.substr(endpoint_.rfind(':') + 1)); }

  // Kills the RADOS Gateway (SIGKILL: as a crash or a lost host); the
  // cluster behind it keeps running. Returns false when it was not running.
  bool kill_gateway() {
    if (external_) return false;
    const std::string pids = read_file(dir_ + "/pids");
    size_t p = pids.rfind("rgw.test ");
    if (p == std::string::npos) return false;
    const int pid = std::stoi(pids.substr(p + 9));
    const bool ok = ::kill(pid, SIGKILL) == 0;
    for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) ::usleep(20000);
    return ok;
  }
  // Starts the gateway again (recorded in DIR/pids, so stop.sh ends it) and
  // waits until it answers. Returns false when it does not come up in 30 s.
  bool restart_gateway() {
    const std::string cmd = "cd " + dir_ + " && (radosgw -c " + dir_ + "/ceph.conf -n client.rgw.test -f >>" + dir_ +
                            "/log/rgw.out 2>&1 & echo \"rgw.test $!\" >> " + dir_ + "/pids)";
    if (std::system(cmd.c_str()) != 0) return false;
    const std::string probe = "curl -s -o /dev/null " + endpoint_ + "/";
    for (int i = 0; i < 300; ++i) {
      if (std::system(probe.c_str()) == 0) return true;
      ::usleep(100000);
    }
    return false;
  }

  void export_env() const {
    ::setenv("AWS_ACCESS_KEY_ID", access_key_.c_str(), 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", secret_key_.c_str(), 1);
    ::setenv("AWS_DEFAULT_REGION", "us-east-1", 1);
  }

 private:
  static bool have_binaries() {
    return std::system("command -v radosgw >/dev/null 2>&1 && command -v ceph-mon >/dev/null 2>&1 && "
                       "command -v ceph-osd >/dev/null 2>&1 && command -v radosgw-admin >/dev/null 2>&1 && "
                       "command -v uuidgen >/dev/null 2>&1 && command -v curl >/dev/null 2>&1") == 0;
  }

  static bool ports_free(int first, int count) {
    for (int port = first; port < first + count; ++port) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(port));
      const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
      if (!ok) return false;
    }
    return true;
  }

  static std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string start() {
    // A gateway already running for the whole test run (one start for every
    // test process): BLKVAULT_TEST_S3_ENDPOINT=http://127.0.0.1:PORT with
    // AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set.
    if (const char* ext = std::getenv("BLKVAULT_TEST_S3_ENDPOINT"); ext != nullptr && *ext) {
      const char* ak = std::getenv("AWS_ACCESS_KEY_ID");
      const char* sk = std::getenv("AWS_SECRET_ACCESS_KEY");
      if (ak == nullptr || sk == nullptr) return "BLKVAULT_TEST_S3_ENDPOINT is set but AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not";
      endpoint_ = ext;
      access_key_ = ak;
      secret_key_ = sk;
      external_ = true;
      return {};
    }
    const char* env_dir = std::getenv("BLKVAULT_CEPH_RGW_DIR");
    // The scripts sit beside the project (../shared); a checkout elsewhere (a CI
    // workspace, a second worktree) finds the workplace's copy, as the lab does.
    scripts_ = env_dir != nullptr && *env_dir ? env_dir : BLKVAULT_SOURCE_DIR "/../shared/ceph-rgw";
    if ((env_dir == nullptr || !*env_dir) && ::access((scripts_ + "/start.sh").c_str(), X_OK) != 0 &&
        ::access("/work/shared/ceph-rgw/start.sh", X_OK) == 0) {
      scripts_ = "/work/shared/ceph-rgw";
    }
    if (::access((scripts_ + "/start.sh").c_str(), X_OK) != 0) {
      return scripts_ + "/start.sh not found (set BLKVAULT_CEPH_RGW_DIR)";
    }
    if (!have_binaries()) {
      const std::string install = std::string(BLKVAULT_SOURCE_DIR) + "/scripts/install-ceph-deps";
      std::fprintf(stderr, "[ceph] the Ceph packages are missing; trying %s\n", install.c_str());
      (void)std::system((install + " >&2").c_str());
      if (!have_binaries()) {
        return "the Ceph packages (ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl) are not installed "
               "and scripts/install-ceph-deps could not install them (it needs root)";
      }
    }
    char tmpl[] = "/tmp/blkvault-ceph-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
    dir_ = std::string(tmpl) + "/c";
    // A block of 100 ports (monitor, gateway, daemons' messengers) that is free now.
    int base = 0;
    for (int attempt = 0; attempt < 50 && base == 0; ++attempt) {
      const int candidate = 20000 + static_cast<int>((::getpid() + attempt * 37) % 120) * 100;
      if (ports_free(candidate, 100)) base = candidate;
    }
    if (base == 0) return "no block of 100 free ports found";
    const std::string cmd = "MON_PORT=" + std::to_string(base) + " RGW_PORT=" + std::to_string(base + 1) +
                            " PORT_MIN=" + std::to_string(base + 10) + " PORT_MAX=" + std::to_string(base + 99) +
                            " timeout 180 " + scripts_ + "/start.sh " + dir_ + " >" + tmpl + "/start.log 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      std::string log = read_file(std::string(tmpl) + "/start.log");
      stop();
      return "start.sh failed: " + log.substr(log.size() > 600 ? log.size() - 600 : 0);
    }
    const std::string env = read_file(dir_ + "/env");
    auto value = [&](const std::string& key) {
      const size_t p = env.find("export " + key + "=");
      if (p == std::string::npos) return std::string();
      const size_t s = p + 8 + key.size();
      return env.substr(s, env.find('\n', s) - s);
    };
    endpoint_ = value("S3_ENDPOINT");
    access_key_ = value("AWS_ACCESS_KEY_ID");
    secret_key_ = value("AWS_SECRET_ACCESS_KEY");
    if (endpoint_.empty() || access_key_.empty()) {
      stop();
      return "start.sh wrote no usable " + dir_ + "/env";
    }
    root_ = tmpl;
    return {};
  }

  void stop() {
    if (external_ || dir_.empty()) return;
    (void)std::system((scripts_ + "/stop.sh " + dir_ + " >/dev/null 2>&1").c_str());
    if (!root_.empty()) (void)std::system(("rm -rf " + root_).c_str());
    dir_.clear();
  }

  std::string scripts_, dir_, root_, endpoint_, access_key_, secret_key_;
  bool external_ = false;
};

}  // namespace blkvault::test
