// `blkvault diff` (and, further down, `restore --delta`) end to end through the
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

// Flips bytes of `path` outside the simulation; returns the chunks that now differ.
std::set<uint64_t> scribble(const std::string& path, std::mt19937_64& rng, int changes, uint64_t chunk) {
  std::string bytes = read_whole(path);
  const std::string before = bytes;
  for (int c = 0; c < changes; ++c) {
    const uint64_t len = 1 + rng() % 3000;
    const uint64_t off = rng() % (bytes.size() - len);
    for (uint64_t i = 0; i < len; ++i) bytes[off + i] = static_cast<char>(bytes[off + i] ^ (1 + rng() % 255));
  }
  std::set<uint64_t> touched;
  for (uint64_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != before[i]) touched.insert(i / chunk);
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return touched;
}

TEST_F(BackupCliTest, DeltaRestoreUndoesSmallChangesWritingAboutWhatChanged) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, seed);
  backup_ok({a});
  const std::string original = read_whole(a);
  const std::string t = dir_ / "target.img";
  std::filesystem::copy_file(a, t);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto touched = scribble(t, rng, 1 + static_cast<int>(rng() % 5), kChunk);
    ASSERT_FALSE(touched.empty());
    auto r = bv({"--json", "restore", "--delta", "-g", "1", "--device", a, "--to", t});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["path"], "compare");
    EXPECT_EQ(j["cbt_unused_reason"], "the target is not the device that was backed up");
    EXPECT_EQ(j["compared_bytes"], kDeviceSize);
    EXPECT_EQ(j["skipped_bytes"], 0);
    EXPECT_EQ(j["chunks_written"], touched.size());
    // Written = the chunks the changes touched (zeros count where the image has a hole).
    EXPECT_EQ(j["written_bytes"].get<uint64_t>() + j["zero_bytes"].get<uint64_t>(), touched.size() * kChunk);
    ASSERT_TRUE(read_whole(t) == original) << "not rolled back";
  }
  // Text: which path ran and what it did.
  auto r = bv({"restore", "--delta", "-g", "1", "--device", a, "--to", t});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("by delta (compare path): compared 4.0 MiB, wrote 0 B"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CBT not used: the target is not the device that was backed up"), std::string::npos) << r.out;
}

TEST_F(BackupCliTest, DeltaRestoreOntoTheTrackedDeviceReadsOnlyWhatTheCbtMarked) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 5);
  backup_ok({a});
  const std::string gen1 = read_whole(a);
  sim_write(a, 3 * kChunk + 10, std::string(100, 'x'));  // chunk 3
  backup_ok({a});                                          // generation 2: the baseline moves on
  sim_write(a, 7 * kChunk, std::string(kChunk + 1, 'y'));  // chunks 7 and 8
  sim_write(a, 20 * kChunk + 70000, std::string(10, 'z'));  // chunk 20 (its second CBT block)

  auto r = bv({"--json", "restore", "--delta", "-g", "1", "--device", a, "--to", a});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["path"], "cbt");
  EXPECT_TRUE(j["cbt_unused_reason"].is_null());
  // CBT blocks are 64 KiB: 1 (chunk 3) + 3 (chunks 7, 8) + 1 (chunk 20).
  EXPECT_EQ(j["cbt_changed_bytes"], 5 * (64 << 10));
  EXPECT_EQ(j["compared_bytes"], 4 * kChunk);
  EXPECT_EQ(j["skipped_bytes"], kDeviceSize - 4 * kChunk);
  EXPECT_EQ(j["chunks_written"], 4);
  ASSERT_TRUE(read_whole(a) == gen1) << "not rolled back";

  // The rollback's writes are seen by the next backup: it is incremental and
  // restores as generation 1.
  auto b = backup_ok({a});
  EXPECT_EQ(b["devices"][0]["mode"], "incremental");
  EXPECT_EQ(b["devices"][0]["read_bytes"], 4 * kChunk);
  EXPECT_TRUE(restore_bytes("3", a) == gen1);

  // A module reload ends the CBT: the comparison path, and it says why.
  ASSERT_EQ(bv({"sim", "drop-state"}).exit_status, 0);
  auto c = bv({"--json", "restore", "--delta", "-g", "2", "--device", a, "--to", a});
  ASSERT_EQ(c.exit_status, 0) << c.err;
  auto k = nlohmann::json::parse(c.out);
  EXPECT_EQ(k["path"], "compare");
  EXPECT_EQ(k["cbt_unused_reason"], a + " is not tracked by the module");
  EXPECT_EQ(k["chunks_written"], 1);  // chunk 3 of generation 2
}

}  // namespace
}  // namespace blkvault::test
