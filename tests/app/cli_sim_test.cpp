// The `blkvault sim` commands through the real executable: exact output and exit codes.
#include <gtest/gtest.h>

#include <fstream>

#include "app/cli_support.h"

namespace blkvault::test {
namespace {

TEST(CliSim, WriteChangesTheImageFileAtTheOffset) {
  TempDir dir;
  std::string image = dir / "disk.img", data = dir / "data";
  write_random_file(image, 1 << 20, 1);
  { std::ofstream(data) << "hello"; }
  std::string before = read_whole(image);
  auto r = run_blkvault({"sim", "write", "--module", "sim:" + (dir / "sim"), image, "--offset", "4096"}, {}, data);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "wrote 5 bytes to " + image + " at offset 4096 through the simulated tracker\n");
  std::string after = read_whole(image);
  before.replace(4096, 5, "hello");
  EXPECT_EQ(after, before);
}

TEST(CliSim, ShowListsNoTrackersOnAFreshModule) {
  TempDir dir;
  auto r = run_blkvault({"--json", "sim", "show", "--module", "sim:" + (dir / "sim")});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("\"trackers\": []"), std::string::npos) << r.out;
}

TEST(CliSim, RefusesAModuleThatIsNotSimulated) {
  auto r = run_blkvault({"sim", "show", "--module", "/dev/veeamblksnap"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: sim commands need --module sim:DIR (got '/dev/veeamblksnap')\n");
}

TEST(CliSim, MissingLengthOfStdinIsAUsageError) {
  TempDir dir;
  std::string image = dir / "disk.img", data = dir / "data";
  write_random_file(image, 1 << 20, 1);
  { std::ofstream(data) << "abc"; }
  auto r = run_blkvault({"sim", "write", "--module", "sim:" + (dir / "sim"), image, "--offset", "0", "--length", "10"},
                        {}, data);
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: stdin ended after 3 of the 10 bytes of --length\n");
}

TEST(Cli, UnknownOptionIsExitTwoWithOneLine) {
  auto r = run_blkvault({"--no-such-option", "version"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: The following argument was not expected: --no-such-option (see 'blkvault --help')\n");
}

}  // namespace
}  // namespace blkvault::test
