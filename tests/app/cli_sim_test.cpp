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

TEST(CliSim, BatchWriteTakesEachExtentFromStdinInTurn) {
  TempDir dir;
  std::string image = dir / "disk.img", data = dir / "data", extents = dir / "extents";
  write_random_file(image, 2 << 20, 1);
  { std::ofstream(data) << "helloWORLD!"; }
  { std::ofstream(extents) << "4096:5\n# a comment\n\n1M:6\n"; }
  std::string before = read_whole(image);
  auto r = run_blkvault({"sim", "write", "--module", "sim:" + (dir / "sim"), image, "--extents", extents}, {}, data);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "wrote 11 bytes to " + image + " through the simulated tracker (extents from " + extents + ")\n");
  before.replace(4096, 5, "hello");
  before.replace(1 << 20, 6, "WORLD!");
  EXPECT_EQ(read_whole(image), before);
}

TEST(CliSim, BatchWriteRefusesABadExtentLineAndAMissingOffset) {
  TempDir dir;
  std::string image = dir / "disk.img", data = dir / "data", extents = dir / "extents";
  write_random_file(image, 1 << 20, 1);
  { std::ofstream(data) << "abc"; }
  { std::ofstream(extents) << "0:3\n12\n"; }
  auto r = run_blkvault({"sim", "write", "--module", "sim:" + (dir / "sim"), image, "--extents", extents}, {}, data);
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: " + extents + ":2: '12': expected OFFSET:LENGTH\n");
  r = run_blkvault({"sim", "write", "--module", "sim:" + (dir / "sim"), image}, {}, data);
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: sim write needs --offset or --extents\n");
}

TEST(CliSim, ShowListsNoTrackersOnAFreshModule) {
  TempDir dir;
  auto r = run_blkvault({"--json", "sim", "show", "--module", "sim:" + (dir / "sim")});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("\"trackers\": []"), std::string::npos) << r.out;
}

TEST(CliSim, OutsideWritesDeclaresADeviceAndShowListsIt) {
  TempDir dir;
  std::string image = dir / "disk.img";
  const std::string module = "sim:" + (dir / "sim");
  write_random_file(image, 1 << 20, 1);
  auto r = run_blkvault({"sim", "outside-writes", "--module", module, image, "none"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, image + ": declared written only through `sim write`: takes read nothing, outside writes go unseen\n");
  r = run_blkvault({"--json", "sim", "show", "--module", module});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("\"outside_writes_none\": [\n    \"" + image + "\""), std::string::npos) << r.out;
  r = run_blkvault({"sim", "outside-writes", "--module", module, image, "detect"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, image + ": writes outside `sim write` are detected (fingerprints, rescanned at take)\n");
  r = run_blkvault({"sim", "show", "--module", module});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out.find("written only through"), std::string::npos) << r.out;
}

TEST(CliSim, OutsideWritesRefusesAMissingDeviceAndAnUnknownMode) {
  TempDir dir;
  const std::string module = "sim:" + (dir / "sim");
  auto r = run_blkvault({"sim", "outside-writes", "--module", module, dir / "nope.img", "none"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: resolving device " + (dir / "nope.img") + ": No such file or directory\n");
  r = run_blkvault({"sim", "outside-writes", "--module", module, dir / "nope.img", "maybe"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: mode: maybe not in {detect,none} (see 'blkvault --help')\n");
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
