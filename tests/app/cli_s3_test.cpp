// The CLI against an S3 repository on a real Ceph RADOS Gateway
// (tests/ceph_gateway.h; skips, saying why, without one): init, backup on the
// simulated module, byte-identical restores, verify --data, status naming the
// lock holder, clear errors; and two hosts (own cache directories and
// simulated modules) backing up concurrently into one bucket, their shared
// chunks stored once.
#include <gtest/gtest.h>

#include <future>

#include "app/backup_support.h"
#include "ceph_gateway.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kDeviceSize = 8 << 20;

class S3CliTest : public BackupCliTest {
 protected:
  void SetUp() override {
    std::string why;
    gw_ = CephGateway::get(&why);
    if (gw_ == nullptr) GTEST_SKIP() << why;
    repo_ = gw_->repo_url(gw_->new_bucket(), "hosts");
  }
  CephGateway* gw_ = nullptr;
};

TEST_F(S3CliTest, InitBackupRestoreVerifyRoundTrip) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init_repo();
  auto again = bv({"init", "--kdf-ops", "1", "--kdf-mem", "64K"});
  EXPECT_EQ(again.exit_status, 2);
  EXPECT_EQ(again.err, "blkvault: " + repo_ + " is already a repository (it has a config object)\n");

  const std::string a = make_device("a.img", kDeviceSize, seed + 1);
  auto first = backup_ok({a});
  ASSERT_EQ(first["state"], "complete");
  const std::string g1 = std::to_string(first["generation"].get<uint64_t>());
  const std::string a1 = read_whole(a);
  for (int w = 0; w < 4; ++w) sim_write(a, rng() % (kDeviceSize - 70000), random_bytes(rng, 1 + rng() % 70000));
  auto second = backup_ok({a});
  ASSERT_EQ(second["state"], "complete");
  EXPECT_EQ(second["devices"][0]["mode"], "incremental");
  EXPECT_LT(second["read_bytes"].get<uint64_t>(), kDeviceSize / 4);
  const std::string g2 = std::to_string(second["generation"].get<uint64_t>());

  EXPECT_TRUE(restore_bytes(g1, a) == a1) << "generation " << g1;
  EXPECT_TRUE(restore_bytes(g2, a) == read_whole(a)) << "generation " << g2;
  auto verify = bv({"--json", "verify", "--data"});
  EXPECT_EQ(verify.exit_status, 0) << verify.err;
  auto v = nlohmann::json::parse(verify.out);
  EXPECT_GT(v["packs"].get<uint64_t>(), 0u);
  auto status = bv({"status"});
  EXPECT_EQ(status.exit_status, 0) << status.err;
  EXPECT_NE(status.out.find("lock: free"), std::string::npos) << status.out;
  // Nothing of the repository lives outside the bucket but this host's cache.
  EXPECT_FALSE(std::filesystem::exists(dir_ / "repo"));
}

TEST_F(S3CliTest, ErrorsAreOneLineWithTheDocumentedStatus) {
  auto missing = bv({"list"});
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_EQ(missing.err, "blkvault: repository " + repo_ + " does not exist (create it with: blkvault init)\n");
  auto bad = bv({"list"}, "", {"BLKVAULT_REPO=s3:ftp://host/bucket"});
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_EQ(bad.err,
            "blkvault: repository s3:ftp://host/bucket: the address must start with https:// or http:// "
            "(expected s3:https://HOST[:PORT]/BUCKET[/PREFIX])\n");
  init_repo();
  auto wrong = bv({"list"}, "", {"AWS_SECRET_ACCESS_KEY=wrong"});
  EXPECT_EQ(wrong.exit_status, 1);
  EXPECT_EQ(wrong.err, "blkvault: HEAD " + repo_ + "/config: HTTP 403 Forbidden (check AWS_ACCESS_KEY_ID, "
                       "AWS_SECRET_ACCESS_KEY and the bucket's permissions)\n");
  EXPECT_EQ(wrong.err.find('\n'), wrong.err.size() - 1) << "one line";
}

TEST_F(S3CliTest, TwoHostsBackUpConcurrentlyIntoOneBucketSharingChunks) {
  init_repo();
  // Host 1 and host 2: their own simulated module and cache; devices share their first half.
  const std::string shared = make_device("shared.img", kDeviceSize / 2, 99);
  std::mt19937_64 rng(7);
  std::string d1 = read_whole(shared) + random_bytes(rng, kDeviceSize / 2);
  std::string d2 = read_whole(shared) + random_bytes(rng, kDeviceSize / 2);
  const std::string dev1 = dir_ / "host1.img", dev2 = dir_ / "host2.img";
  std::ofstream(dev1, std::ios::binary) << d1;
  std::ofstream(dev2, std::ios::binary) << d2;
  auto host = [&](const std::string& name, const std::string& dev) {
    std::vector<std::string> env = {"BLKVAULT_MODULE=sim:" + dir_ / (name + "-sim"),
                                    "BLKVAULT_CACHE_DIR=" + dir_ / (name + "-cache")};
    std::vector<std::string> args = {"--json", "--lock-wait", "300", "backup"};
    for (const auto& a : diff_storage_args()) args.push_back(a);
    args.push_back(dev);
    return bv(args, "", env);
  };
  auto f1 = std::async(std::launch::async, host, "host1", dev1);
  auto f2 = std::async(std::launch::async, host, "host2", dev2);
  CliRun r1 = f1.get(), r2 = f2.get();
  ASSERT_EQ(r1.exit_status, 0) << r1.err;
  ASSERT_EQ(r2.exit_status, 0) << r2.err;
  auto j1 = nlohmann::json::parse(r1.out), j2 = nlohmann::json::parse(r2.out);
  EXPECT_NE(j1["generation"], j2["generation"]);
  // What the second host found already stored is the shared half.
  const uint64_t new1 = j1["new_bytes"].get<uint64_t>(), new2 = j2["new_bytes"].get<uint64_t>();
  const uint64_t first_new = std::max(new1, new2), second_new = std::min(new1, new2);
  // The second stored only its own random half; the first also the shared
  // half's distinct non-zero chunks: 32 chunks less 8 zero ones less 1 repeat.
  EXPECT_EQ(second_new, kDeviceSize / 2);
  EXPECT_EQ(first_new, kDeviceSize / 2 + 23 * kChunk) << "the shared half stored once";
  // Each host restores both hosts' devices byte-identical through its own cache.
  for (const char* name : {"host1", "host2"}) {
    SCOPED_TRACE(name);
    const std::vector<std::string> env = {"BLKVAULT_CACHE_DIR=" + dir_ / (std::string(name) + "-cache")};
    for (auto [gen, dev, want] : {std::tuple{j1["generation"], dev1, &d1}, std::tuple{j2["generation"], dev2, &d2}}) {
      const std::string to = dir_ / (std::string(name) + "-restored");
      auto r = bv({"-q", "restore", "--generation", std::to_string(gen.get<uint64_t>()), "--device", dev, "--to", to},
                  "", env);
      ASSERT_EQ(r.exit_status, 0) << r.err;
      EXPECT_TRUE(read_whole(to) == *want) << dev;
      std::filesystem::remove(to);
    }
  }
}

}  // namespace
}  // namespace blkvault::test
