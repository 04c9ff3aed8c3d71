#include "app/subprocess.h"

#include <gtest/gtest.h>

namespace blkvault::app {
namespace {

TEST(RunProcess, CapturesStdoutAndExitStatusWithoutAShell) {
  auto r = run_process({"printf", "%s|", "a b", "$HOME"}, /*capture_stdout=*/true);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->exit_status, 0);
  EXPECT_EQ(r->stdout_text, "a b|$HOME|") << "arguments reach the program verbatim";
  auto f = run_process({"sh", "-c", "exit 7"});
  ASSERT_TRUE(f);
  EXPECT_EQ(f->exit_status, 7);
  auto k = run_process({"sh", "-c", "kill -TERM $$"});
  ASSERT_TRUE(k);
  EXPECT_EQ(k->exit_status, 128 + 15);
}

TEST(RunProcess, MissingProgramIsAnError) {
  auto r = run_process({"blkvault-no-such-program"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "starting blkvault-no-such-program: No such file or directory");
  EXPECT_FALSE(program_available("blkvault-no-such-program"));
  EXPECT_TRUE(program_available("sh"));
}

}  // namespace
}  // namespace blkvault::app
