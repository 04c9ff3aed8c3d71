// prune and gc through the real executable.
#include <gtest/gtest.h>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {

class MaintenanceCliTest : public BackupCliTest {
 protected:
  // Four generations of a.img, each after a tracked write.
  void four_generations() {
    init_repo();
    a_ = make_device("a.img", 8 * kChunk, 3);
    backup_ok({a_});
    for (int i = 0; i < 3; ++i) {
      sim_write(a_, static_cast<uint64_t>(i + 1) * kChunk + 5, std::string(3000, static_cast<char>('a' + i)));
      backup_ok({a_});
    }
    for (int g = 1; g <= 4; ++g) image_[g] = restore_bytes(std::to_string(g), a_);
  }
  std::string a_;
  std::map<int, std::string> image_;
};

TEST_F(MaintenanceCliTest, PruneDryRunShowsTheDecisionsAndChangesNothing) {
  four_generations();
  auto r = bv({"prune", "--keep-last", "2", "--dry-run"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("remove      1  "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no rule keeps it"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("last 1, latest of " + a_), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("would remove 2 generation(s), kept 2 (keep-last 2)\n"), std::string::npos) << r.out;
  auto list = nlohmann::json::parse(bv({"--json", "list"}).out);
  EXPECT_EQ(list["generations"].size(), 4u);
}

TEST_F(MaintenanceCliTest, PruneThenGcKeepsTheRestByteIdentical) {
  four_generations();
  auto r = bv({"prune", "--keep-last", "2"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("removed 2 generation(s), kept 2 (keep-last 2); 'blkvault gc' reclaims their space\n"),
            std::string::npos)
      << r.out;
  auto list = nlohmann::json::parse(bv({"--json", "list"}).out);
  ASSERT_EQ(list["generations"].size(), 2u);
  EXPECT_EQ(list["generations"][0]["id"], 3);
  auto gone = bv({"restore", "--generation", "1", "--device", a_, "--to", dir_ / "x"});
  EXPECT_EQ(gone.exit_status, 2);
  EXPECT_EQ(gone.err, "blkvault: generation 1 was removed by prune (the repository has: 3, 4)\n");

  auto gc = bv({"gc"});
  ASSERT_EQ(gc.exit_status, 0) << gc.err;
  EXPECT_EQ(gc.out.rfind("gc: ", 0), 0u) << gc.out;
  EXPECT_NE(gc.out.find(" reclaimed)\n"), std::string::npos) << gc.out;
  EXPECT_EQ(restore_bytes("3", a_), image_[3]);
  EXPECT_EQ(restore_bytes("4", a_), image_[4]);
  auto verify = bv({"verify", "--data"});
  EXPECT_EQ(verify.exit_status, 0) << verify.out << verify.err;
  // The next backup is still an incremental on 4.
  sim_write(a_, 6 * kChunk, "after prune");
  auto next = backup_ok({a_});
  EXPECT_EQ(next["devices"][0]["mode"], "incremental");
  EXPECT_EQ(next["devices"][0]["read_bytes"], kChunk);
}

TEST_F(MaintenanceCliTest, GcDryRunAndJson) {
  four_generations();
  ASSERT_EQ(bv({"-q", "prune", "--keep-last", "1"}).exit_status, 0);
  auto dry = bv({"--json", "gc", "--dry-run"});
  ASSERT_EQ(dry.exit_status, 0) << dry.err;
  auto j = nlohmann::json::parse(dry.out);
  EXPECT_EQ(j["dry_run"], true);
  EXPECT_GT(j["bytes_before"].get<uint64_t>(), 0u);
  auto real = nlohmann::json::parse(bv({"--json", "gc"}).out);
  EXPECT_EQ(real["bytes_after"], j["bytes_after"]) << "the dry run predicts the result";
  EXPECT_EQ(restore_bytes("latest", a_), image_[4]);
}

TEST_F(MaintenanceCliTest, PruneRefusesAnEmptyPolicyAndBadCounts) {
  four_generations();
  auto r = bv({"prune"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err,
            "blkvault: no keep rule given (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, "
            "--keep-yearly): refusing to remove every generation\n");
  auto bad = bv({"prune", "--keep-last", "-1"});
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_EQ(bad.err.rfind("blkvault: --keep-last: ", 0), 0u) << bad.err;
}

}  // namespace
}  // namespace blkvault::test
