// `blkvault backup` and `restore` end to end through the real executable on the
// simulated module: full then incremental rounds over two devices, each
// generation restored byte-identical; the bytes an incremental reads; a CBT reset.
#include <fcntl.h>

#include <fstream>
#include <random>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "app/backup_support.h"
#include "app/pipeline.h"
#include "common/direct_read.h"
#include "common/file_io.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kDeviceSize = 8 << 20;

// Changes `device` behind the simulation's back (like a loop mount would): it
// must find the change by content at the next take.
void outside_write(const std::string& device, uint64_t offset, const std::string& data) {
  std::fstream f(device, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

TEST_F(BackupCliTest, TwoDevicesFullThenIncrementalRoundsRestoreEveryGenerationByteIdentical) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, seed + 1);
  const std::string b = make_device("b.img", kDeviceSize - 12288, seed + 2);  // last chunk partial
  const uint64_t b_size = kDeviceSize - 12288;  // whole sectors, as a block device has

  // generation -> device -> the device as it was at that backup
  std::map<std::string, std::map<std::string, std::string>> expected;
  auto first = backup_ok({a, b});
  ASSERT_EQ(first["state"], "complete");
  ASSERT_EQ(first["devices"].size(), 2u);
  for (const auto& d : first["devices"]) {
    EXPECT_EQ(d["mode"], "full");
    EXPECT_EQ(d["reason"], "no earlier backup of this device");
    EXPECT_EQ(d["complete"], true);
    EXPECT_TRUE(d["error"].is_null());
    EXPECT_EQ(d["read_bytes"], d["size_bytes"]);
    EXPECT_EQ(d["changed_bytes"], d["size_bytes"]);
    // A quarter is zeros and one chunk repeats: new data is less than what was read.
    EXPECT_LT(d["new_bytes"].get<uint64_t>(), d["read_bytes"].get<uint64_t>());
  }
  EXPECT_EQ(first["devices"][0]["name"], a);
  EXPECT_EQ(first["devices"][1]["name"], b);
  EXPECT_EQ(first["devices"][1]["size_bytes"], b_size);
  EXPECT_EQ(first["read_bytes"], kDeviceSize + b_size);
  std::string gen = std::to_string(first["generation"].get<uint64_t>());
  expected[gen] = {{a, read_whole(a)}, {b, read_whole(b)}};

  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ChangeLog changes;
    for (int w = 0; w < 6; ++w) {
      const std::string& dev = w % 2 ? b : a;
      const uint64_t size = w % 2 ? b_size : kDeviceSize;
      const uint64_t len = 1 + rng() % 200000;
      const uint64_t off = rng() % (size - len);
      sim_write(dev, off, random_bytes(rng, len));
      changes.add(dev, off, len, kChunk);
    }
    if (round == 1) {  // the last bytes of b, behind the simulation's back
      outside_write(b, b_size - 100, random_bytes(rng, 100));
      changes.add(b, b_size - 100, 100, kChunk);
    }
    auto r = backup_ok({a, b});
    ASSERT_EQ(r["state"], "complete");
    uint64_t total = 0;
    for (const auto& d : r["devices"]) {
      const std::string name = d["name"];
      SCOPED_TRACE(name);
      EXPECT_EQ(d["mode"], "incremental");
      EXPECT_TRUE(d["reason"].is_null());
      const uint64_t want = changes.bytes(name, kChunk, name == b ? b_size : kDeviceSize);
      EXPECT_EQ(d["read_bytes"].get<uint64_t>(), want);
      EXPECT_LE(d["changed_bytes"].get<uint64_t>(), want);
      total += want;
    }
    EXPECT_EQ(r["read_bytes"].get<uint64_t>(), total);
    gen = std::to_string(r["generation"].get<uint64_t>());
    expected[gen] = {{a, read_whole(a)}, {b, read_whole(b)}};
  }

  for (const auto& [g, devices] : expected) {
    for (const auto& [dev, bytes] : devices) {
      SCOPED_TRACE("generation " + g + " of " + dev);
      EXPECT_TRUE(restore_bytes(g, dev) == bytes) << "restored image differs";
    }
  }
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
  EXPECT_TRUE(sim_show()["snapshots"].empty());
}

TEST_F(BackupCliTest, NoChangesReadsNothingAndStillRestores) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 7);
  backup_ok({a});
  auto r = backup_ok({a});
  EXPECT_EQ(r["devices"][0]["mode"], "incremental");
  EXPECT_EQ(r["devices"][0]["read_bytes"], 0);
  EXPECT_EQ(r["devices"][0]["new_bytes"], 0);
  EXPECT_EQ(r["devices"][0]["stored_bytes"], 0);
  EXPECT_TRUE(restore_bytes(std::to_string(r["generation"].get<uint64_t>()), a) == read_whole(a));
}

TEST_F(BackupCliTest, CbtResetFallsBackToAFullReadAndSaysWhy) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 3);
  backup_ok({a});
  auto drop = bv({"-q", "sim", "drop-state"});
  ASSERT_EQ(drop.exit_status, 0) << drop.err;
  sim_write(a, 4096, "after the module reload");
  auto r = backup_ok({a});
  EXPECT_EQ(r["devices"][0]["mode"], "full");
  EXPECT_EQ(r["devices"][0]["reason"], "CBT generation changed");
  EXPECT_EQ(r["devices"][0]["read_bytes"], kDeviceSize);
  // Everything but the one changed chunk was stored before.
  EXPECT_LE(r["devices"][0]["new_bytes"].get<uint64_t>(), kChunk);
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));

  // And the next one is incremental again.
  sim_write(a, 3 * kChunk + 10, "x");
  auto next = backup_ok({a});
  EXPECT_EQ(next["devices"][0]["mode"], "incremental");
  EXPECT_EQ(next["devices"][0]["read_bytes"], kChunk);
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
}

TEST_F(BackupCliTest, FullOptionReadsEveryBlockAndSaysSo) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 4);
  backup_ok({a});
  auto r = backup_ok({a}, {"--full"});
  EXPECT_EQ(r["devices"][0]["mode"], "full");
  EXPECT_EQ(r["devices"][0]["reason"], "--full");
  EXPECT_EQ(r["devices"][0]["read_bytes"], kDeviceSize);
  EXPECT_EQ(r["devices"][0]["new_bytes"], 0);  // all deduplicated
  EXPECT_TRUE(restore_bytes("latest", a) == read_whole(a));
}

TEST_F(BackupCliTest, HumanSummaryNamesEachDeviceAndTheGeneration) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 5);
  std::vector<std::string> args = {"backup"};
  for (const auto& x : diff_storage_args()) args.push_back(x);
  args.push_back(a);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("generation 1 committed (complete): 1 device in ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\n  " + a + ": full read (no earlier backup of this device) of 8.0 MiB; read 8.0 MiB in "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(" new after dedup, "), std::string::npos) << r.out;

  sim_write(a, 0, "y");
  r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("\n  " + a + ": incremental, 64.0 KiB of 8.0 MiB changed; read 128.0 KiB in "),
            std::string::npos)
      << r.out;
}

TEST_F(BackupCliTest, QuietPrintsNothingOnStderr) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 6);
  std::vector<std::string> args = {"-q", "backup"};
  for (const auto& x : diff_storage_args()) args.push_back(x);
  args.push_back(a);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
}


TEST_F(BackupCliTest, JsonProgressReportsEachDeviceOnStderr) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 8);
  std::vector<std::string> args = {"--json-progress", "backup"};
  for (const auto& x : diff_storage_args()) args.push_back(x);
  args.push_back(a);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const std::string last = "{\"done_bytes\":" + std::to_string(kDeviceSize) + ",\"event\":\"progress\",\"task\":\"" + a +
                           "\",\"total_bytes\":" + std::to_string(kDeviceSize) + "}\n";
  EXPECT_NE(r.err.find(last), std::string::npos) << r.err;
}

// The images are read past the page cache (common/direct_read.h): every read of
// a device whose size is a whole number of pages, and of another one all but
// its last segment, which does not end on a page.
TEST_F(BackupCliTest, ImagesAreReadPastThePageCacheWhereTheReadsAreAligned) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize - 12288, 5);  // last chunk partial, whole pages
  const std::string b = make_device("b.img", 3 * kDeviceSize - 512, 6);  // ends mid-page
  {
    auto fd = open_file(a, O_RDONLY);
    ASSERT_TRUE(fd);
    if (!DirectReads(fd->get()).enabled()) GTEST_SKIP() << "the filesystem of " << dir_.path() << " refuses O_DIRECT";
  }
  std::vector<std::string> args = {"-v", "backup"};
  for (const auto& d : diff_storage_args()) args.push_back(d);
  args.push_back(a);
  args.push_back(b);
  auto r = bv(args);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  auto line = [&](const std::string& dev) {
    const size_t at = r.err.find(dev + ": ");
    return at == std::string::npos ? std::string() : r.err.substr(at, r.err.find('\n', at) - at);
  };
  const uint64_t a_size = kDeviceSize - 12288, b_size = 3 * kDeviceSize - 512;
  EXPECT_NE(line(a).find(fmt::format("{}: {} of the {} bytes read from ", a, a_size, a_size)), std::string::npos) << r.err;
  // Segments of 8 MiB: the first two direct, the last (8 MiB - 512 bytes) through the page cache.
  EXPECT_NE(line(b).find(fmt::format("{}: {} of the {} bytes read from ", b, 2 * app::PipelineOptions::kSegmentBytes, b_size)), std::string::npos)
      << r.err;
  EXPECT_NE(line(b).find(" bypassed the page cache (O_DIRECT)"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace blkvault::test
