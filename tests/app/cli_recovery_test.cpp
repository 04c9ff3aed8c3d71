// `blkvault diff` end to end through the
// real executable on the simulated module.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <random>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kDeviceSize = 4 << 20;

TEST_F(BackupCliTest, DiffListsTheChunksWrittenBetweenTwoGenerations) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 1);
  const std::string b = make_device("b.img", kDeviceSize, 2);
  backup_ok({a, b});
  sim_write(a, 3 * kChunk + 10, std::string(100, 'x'));          // chunk 3
  sim_write(a, 5 * kChunk - 1, std::string(2, 'y'));             // chunks 4 and 5
  sim_write(a, kDeviceSize - 1, std::string(1, 'z'));             // the last chunk
  backup_ok({a, b});

  auto r = bv({"--json", "diff", "1", "2"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["from"], 1);
  EXPECT_EQ(j["to"], 2);
  ASSERT_EQ(j["devices"].size(), 2u);
  const auto& da = j["devices"][0];
  EXPECT_EQ(da["name"], a);
  EXPECT_EQ(da["changed_chunks"], 4);
  EXPECT_EQ(da["changed_bytes"], 4 * kChunk);
  const nlohmann::json want = nlohmann::json::array(
      {{{"offset_bytes", 3 * kChunk}, {"length_bytes", 3 * kChunk}},
       {{"offset_bytes", kDeviceSize - kChunk}, {"length_bytes", kChunk}}});
  EXPECT_EQ(da["ranges"], want);
  EXPECT_EQ(j["devices"][1]["name"], b);
  EXPECT_EQ(j["devices"][1]["changed_bytes"], 0);
  EXPECT_TRUE(j["devices"][1]["ranges"].empty());

  auto text = bv({"diff", "latest", "1", "--device", a});
  ASSERT_EQ(text.exit_status, 0) << text.err;
  EXPECT_EQ(text.out, "generation 2 -> 1 (chunk size 128.0 KiB)\n" + a +
                          ": 512.0 KiB changed in 2 ranges (4 chunks of 128.0 KiB)\n"
                          "  393216..786432  384.0 KiB\n"
                          "  4063232..4194304  128.0 KiB\n");
}

TEST_F(BackupCliTest, DiffNamesAnUnknownGenerationOrDeviceInOneLine) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 1);
  backup_ok({a});
  auto r = bv({"diff", "1", "9"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: diff: generation 9 does not exist\n");
  r = bv({"diff", "1", "1", "--device", "/dev/nope"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: diff: neither generation 1 nor 1 has device /dev/nope\n");
  r = bv({"diff", "1", "x"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: diff: 'x' is not a generation id (a number, or 'latest')\n");
}

}  // namespace
}  // namespace blkvault::test
