// Sixteen devices in one snapshot (issue 8, "under load"): one backup run
// takes them all, commits one generation with sixteen devices, releases the
// snapshot, and each restores byte-identical; an incremental then reads only
// what changed on the two devices written to.
#include <gtest/gtest.h>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {

class SixteenDevicesTest : public BackupCliTest {};

TEST_F(SixteenDevicesTest, OneSnapshotOfSixteenDevicesRestoresEachByteIdentical) {
  init_repo();
  std::vector<std::string> devices;
  for (int i = 0; i < 16; ++i) {
    devices.push_back(make_device("d" + std::to_string(i) + ".img", 1 << 20, 100 + static_cast<uint64_t>(i)));
  }
  auto full = backup_ok(devices);
  ASSERT_EQ(full["devices"].size(), 16u) << full.dump();
  for (const auto& d : full["devices"]) EXPECT_EQ(d["mode"], "full");
  EXPECT_TRUE(sim_show()["snapshots"].empty()) << "the snapshot was not released";

  sim_write(devices[3], 5, "changed");
  sim_write(devices[12], kChunk * 3, "changed too");
  auto incr = backup_ok(devices);
  ASSERT_EQ(incr["devices"].size(), 16u);
  uint64_t read = 0;
  for (const auto& d : incr["devices"]) {
    EXPECT_EQ(d["mode"], "incremental") << d.dump();
    read += d["read_bytes"].get<uint64_t>();
  }
  EXPECT_EQ(read, 2 * kChunk) << incr.dump();
  for (const auto& dev : devices) {
    EXPECT_TRUE(restore_bytes("1", dev).size() == (1u << 20)) << dev;
    EXPECT_TRUE(restore_bytes("latest", dev) == read_whole(dev)) << dev;
  }
  EXPECT_EQ(bv({"verify", "--data"}).exit_status, 0);
}

}  // namespace
}  // namespace blkvault::test
