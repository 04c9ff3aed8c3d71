// `blkvault demo`, the README's first command, passes end to end.
#include <gtest/gtest.h>

#include <filesystem>

#include "app/cli_support.h"

namespace blkvault::test {
namespace {

TEST(CliDemo, PassesEndToEndAndSaysWhatTheIncrementalRead) {
  TempDir dir;
  auto r = run_blkvault({"demo", "--dir", dir / "work", "--size", "48M"});
  ASSERT_EQ(r.exit_status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\nDemo passed.\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(": incremental backup, read "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("both generations restored byte-identical"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "work/repo/config")) << "--dir is kept";
}

TEST(CliDemo, RefusesANonEmptyDirectoryAndATinySize) {
  TempDir dir;
  std::filesystem::create_directories(dir / "x");
  auto r = run_blkvault({"demo", "--dir", dir.path()});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: demo directory " + dir.path() + " is not empty\n");
  r = run_blkvault({"demo", "--size", "1M"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: demo --size must be at least 32M\n");
}

}  // namespace
}  // namespace blkvault::test
