#include "repo/lock.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <thread>

#include "temp_dir.h"

namespace blkvault::repo {
namespace {

class LockTest : public ::testing::Test {
 protected:
  // A child that takes the lock, signals through a pipe, then sleeps until killed.
  pid_t holder() {
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      auto l = RepoLock::acquire(dir_, 0);
      char c = l ? 1 : 0;
      if (::write(p[1], &c, 1) != 1) _exit(2);
      for (;;) ::pause();
    }
    char c = 0;
    EXPECT_EQ(::read(p[0], &c, 1), 1);
    EXPECT_EQ(c, 1);
    ::close(p[0]);
    ::close(p[1]);
    return pid;
  }

  test::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_F(LockTest, SecondWriterFailsAtOnceNamingTheHolder) {
  pid_t pid = holder();
  auto r = RepoLock::acquire(dir_, 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kLocked);
  std::regex want("repository " + dir_ + " is locked by pid " + std::to_string(pid) +
                  " on host .+ since \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ");
  EXPECT_TRUE(std::regex_match(r.error().message(), want)) << r.error().message();
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

TEST_F(LockTest, LockOfAKilledProcessIsFreeAtOnce) {
  pid_t pid = holder();
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  EXPECT_TRUE(RepoLock::acquire(dir_, 0));
}

TEST_F(LockTest, WaitingWriterGetsTheLockWhenItIsReleased) {
  pid_t pid = holder();
  std::thread killer([pid] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ::kill(pid, SIGKILL);
  });
  auto start = std::chrono::steady_clock::now();
  auto r = RepoLock::acquire(dir_, 10);
  killer.join();
  ::waitpid(pid, nullptr, 0);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(LockTest, WaitGivesUpAfterItsLimit) {
  pid_t pid = holder();
  auto r = RepoLock::acquire(dir_, 0.3);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("(waited 0.3 s)"), std::string::npos) << r.error().message();
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace
}  // namespace blkvault::repo
