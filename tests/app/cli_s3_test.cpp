// The CLI against an S3 repository on a real Ceph RADOS Gateway
// (tests/ceph_gateway.h; skips, saying why, without one): init, backup on the
// simulated module, byte-identical restores, verify --data, status naming the
// lock holder, clear errors; and two hosts (own cache directories and
// simulated modules) backing up concurrently into one bucket, their shared
// chunks stored once.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <regex>
#include <set>
#include <thread>

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
  EXPECT_NE(status.out.find("  lock: free\n  backups in progress: none\n  condemned by gc: none\n"), std::string::npos)
      << status.out;
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
  // They ran at the same time (backups share the repository): each stored
  // its own random half and the shared half's distinct non-zero chunks (32
  // chunks less 8 zero ones less 1 repeat) unless the other had committed
  // them before it looked; the index keeps one copy.
  const uint64_t new1 = j1["new_bytes"].get<uint64_t>(), new2 = j2["new_bytes"].get<uint64_t>();
  for (uint64_t n : {new1, new2}) {
    EXPECT_TRUE(n == kDeviceSize / 2 || n == kDeviceSize / 2 + 23 * kChunk) << n;
  }
  EXPECT_EQ(std::max(new1, new2), kDeviceSize / 2 + 23 * kChunk);
  auto status = bv({"--json", "status"}, "", {"BLKVAULT_CACHE_DIR=" + dir_ / "host1-cache"});
  ASSERT_EQ(status.exit_status, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out)["repository"]["chunks"].get<uint64_t>(),
            (kDeviceSize + 23 * kChunk) / kChunk) << "the shared half indexed once";
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

TEST_F(S3CliTest, CredentialsComeFromAFileWhenTheEnvironmentHasNone) {
  init_repo();
  const std::string file = dir_ / "s3.credentials", partial = dir_ / "partial.credentials";
  std::ofstream(file) << "[default]\naws_access_key_id = " << gw_->access_key()
                      << "\naws_secret_access_key = " << gw_->secret_key() << "\n";
  std::ofstream(partial) << "[default]\naws_access_key_id = " << gw_->access_key() << "\n";
  const std::vector<std::string> no_env = {"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="};
  auto none = bv({"list"}, "", no_env);
  EXPECT_EQ(none.exit_status, 2);
  EXPECT_EQ(none.err, "blkvault: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a "
                      "credentials file (BLKVAULT_S3_CREDENTIALS_FILE, or credentials-file in the config) (see "
                      "docs/OBJECT-STORAGE.md)\n");
  auto env = no_env;
  env.push_back("BLKVAULT_S3_CREDENTIALS_FILE=" + file);
  auto listed = bv({"list"}, "", env);
  EXPECT_EQ(listed.exit_status, 0) << listed.err;
  EXPECT_EQ(listed.out, "no generations yet\n");
  env.back() = "BLKVAULT_S3_CREDENTIALS_FILE=" + partial;
  auto bad = bv({"list"}, "", env);
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_EQ(bad.err, "blkvault: S3 credentials file " + partial + " has no aws_secret_access_key in its [default] section\n");
  // The config names it: config check validates it, and a job's backup uses it.
  const std::string dev = make_device("a.img", kDeviceSize / 4, 2);
  const std::string config = dir_ / "blkvault.toml";
  std::ofstream(config) << "module = \"" << sim_ << "\"\n"
                        << "[repository]\npath = \"" << repo_ << "\"\ncredentials-file = \"" << file << "\"\n"
                        << "[diff-storage]\nsize = \"4M\"\nlimit = \"16M\"\n"
                        << "[report]\nlog-file = \"" << (dir_ / "job.log") << "\"\nsyslog = false\n"
                        << "[job.nightly]\ndevices = [\"" << dev << "\"]\n";
  auto check = bv({"config", "check", "--config", config}, "", no_env);
  EXPECT_EQ(check.exit_status, 0) << check.err;
  auto job = bv({"--json", "run", "nightly", "--config", config}, "", no_env);
  EXPECT_EQ(job.exit_status, 0) << job.err << job.out;
  EXPECT_TRUE(restore_bytes("1", dev) == read_whole(dev));
}

// Three hosts (own UTS namespace and host name, cache directory and
// simulated module) back up devices that share a third of their content into
// one bucket at the same time: each waits, snapshot taken and repository
// held, until all three are there, so the backups really overlap.
TEST_F(S3CliTest, ThreeHostsBackUpAtOnceRestoreByteIdenticalAndShareTheirChunks) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("BLKVAULT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  init_repo();
  const std::string shared = random_bytes(rng, kDeviceSize / 4);
  std::vector<std::string> devs, contents;
  for (int h = 1; h <= 3; ++h) {
    devs.push_back(dir_ / ("host" + std::to_string(h) + ".img"));
    contents.push_back(shared + random_bytes(rng, kDeviceSize / 4));
    std::ofstream(devs.back(), std::ios::binary) << contents.back();
  }
  const std::string barrier = dir_ / "barrier";
  std::filesystem::create_directories(barrier);
  auto host = [&](int h, const std::string& dev) {
    const std::string name = "host" + std::to_string(h);
    // Every host arrives, then waits (at most 60 s) for the other two.
    const std::string wait = "touch " + barrier + "/" + name + "; i=0; while [ $(ls " + barrier +
                             " | wc -l) -lt 3 ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.1; done";
    std::vector<std::string> env = {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=sim:" + dir_ / (name + "-sim"),
                                    "BLKVAULT_PASSWORD=" + std::string(kPassphrase),
                                    "BLKVAULT_CACHE_DIR=" + dir_ / (name + "-cache"), "BLKVAULT_SIM_AFTER_TAKE=" + wait};
    std::vector<std::string> args = {"--json", "backup"};
    for (const auto& a : diff_storage_args()) args.push_back(a);
    args.push_back(dev);
    return run_blkvault(args, env, "", name);
  };
  std::vector<std::future<CliRun>> runs;
  for (int h = 1; h <= 3; ++h) runs.push_back(std::async(std::launch::async, host, h, devs[h - 1]));
  std::vector<nlohmann::json> out;
  for (auto& f : runs) {
    CliRun r = f.get();
    if (r.exit_status == 126) GTEST_SKIP() << "cannot make a UTS namespace (needs root)";
    ASSERT_EQ(r.exit_status, 0) << r.err;
    out.push_back(nlohmann::json::parse(r.out));
  }
  std::set<uint64_t> ids;
  for (const auto& j : out) ids.insert(j["generation"].get<uint64_t>());
  EXPECT_EQ(ids, (std::set<uint64_t>{1, 2, 3})) << "three generations under three ids";
  // Each host restores every host's device byte-identical through its own cache.
  for (int h = 1; h <= 3; ++h) {
    const std::string name = "host" + std::to_string(h);
    SCOPED_TRACE(name);
    const std::vector<std::string> env = {"BLKVAULT_CACHE_DIR=" + dir_ / (name + "-cache")};
    for (int o = 0; o < 3; ++o) {
      const std::string to = dir_ / (name + "-restored");
      auto r = bv({"-q", "restore", "--generation", std::to_string(out[o]["generation"].get<uint64_t>()), "--device",
                   devs[o], "--to", to},
                  "", env);
      ASSERT_EQ(r.exit_status, 0) << r.err;
      EXPECT_TRUE(read_whole(to) == contents[o]) << devs[o];
      std::filesystem::remove(to);
    }
  }
  auto list = bv({"--json", "list"}, "", {"BLKVAULT_CACHE_DIR=" + dir_ / "host1-cache"});
  ASSERT_EQ(list.exit_status, 0) << list.err;
  std::set<std::string> hosts;
  const auto listed = nlohmann::json::parse(list.out);
  for (const auto& g : listed["generations"]) hosts.insert(g["host"].get<std::string>());
  EXPECT_EQ(hosts, (std::set<std::string>{"host1", "host2", "host3"}));
  // Every distinct chunk is in the index once: the shared quarter (16
  // chunks) and each host's own quarter (3 x 16).
  auto status = bv({"--json", "status"}, "", {"BLKVAULT_CACHE_DIR=" + dir_ / "host3-cache"});
  ASSERT_EQ(status.exit_status, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out)["repository"]["chunks"].get<uint64_t>(), 64u);
  // What one host stored, another reuses: host 1 backs up a copy of host 2's
  // device and stores nothing new.
  const std::string copy = dir_ / "copy-of-host2.img";
  std::ofstream(copy, std::ios::binary) << contents[1];
  auto again = run_blkvault({"--json", "backup", "--diff-storage-size", "4M", "--diff-storage-limit", "16M", copy},
                            {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=sim:" + dir_ / "host1-sim",
                             "BLKVAULT_PASSWORD=" + std::string(kPassphrase), "BLKVAULT_CACHE_DIR=" + dir_ / "host1-cache"},
                            "", "host1");
  ASSERT_EQ(again.exit_status, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(again.out)["new_bytes"].get<uint64_t>(), 0u) << "host 2's chunks were reused";
  // gc (which rewrites the packs holding the copies the concurrent first round
  // uploaded twice) leaves verify --data clean and the restores intact.
  auto gc = bv({"--json", "gc"}, "", {"BLKVAULT_CACHE_DIR=" + dir_ / "host1-cache"});
  ASSERT_EQ(gc.exit_status, 0) << gc.err;
  auto verify = bv({"--json", "verify", "--data"}, "", {"BLKVAULT_CACHE_DIR=" + dir_ / "host2-cache"});
  EXPECT_EQ(verify.exit_status, 0) << verify.err;
}

// prune + gc from one host while another backs up: they wait for the backup
// (or, with no wait, refuse naming it), and the backup's generation restores
// byte-identical afterwards with verify --data clean.
TEST_F(S3CliTest, PruneAndGcFromOneHostRunAlongsideAnotherHostsBackupAndLoseNothing) {
  init_repo();
  std::mt19937_64 rng(11);
  const std::string old_dev = make_device("old.img", kDeviceSize / 2, 3);
  auto first = backup_ok({old_dev});  // generation 1: pruned below, all its chunks then garbage
  sim_write(old_dev, 0, random_bytes(rng, kDeviceSize / 2));
  ASSERT_EQ(backup_ok({old_dev})["generation"], 2);
  const std::string dev = make_device("busy.img", kDeviceSize / 2, 5);
  const std::string started = dir_ / "busy-started", go = dir_ / "busy-go";
  const std::string hold = "touch " + started + "; i=0; while [ ! -e " + go +
                           " ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.1; done";
  auto busy = std::async(std::launch::async, [&] {
    return run_blkvault({"--json", "backup", "--diff-storage-size", "4M", "--diff-storage-limit", "16M", dev},
                        {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=sim:" + dir_ / "busy-sim",
                         "BLKVAULT_PASSWORD=" + std::string(kPassphrase), "BLKVAULT_CACHE_DIR=" + dir_ / "busy-cache",
                         "BLKVAULT_SIM_AFTER_TAKE=" + hold},
                        "", "busy");
  });
  for (int i = 0; i < 600 && !std::filesystem::exists(started); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(std::filesystem::exists(started));
  const std::vector<std::string> maint = {"BLKVAULT_CACHE_DIR=" + dir_ / "maint-cache"};
  // Prune and gc do not wait for the backup: gc condemns generation 1's
  // garbage and leaves it for a gc after the backup.
  auto pruned = bv({"--json", "prune", "--keep-last", "1", "--gc"}, "", maint);
  ASSERT_EQ(pruned.exit_status, 0) << pruned.err;
  EXPECT_EQ(busy.wait_for(std::chrono::seconds(0)), std::future_status::timeout) << "the backup is still held";
  auto p = nlohmann::json::parse(pruned.out);
  EXPECT_EQ(p["removed"], nlohmann::json::array({first["generation"]})) << pruned.out;
  EXPECT_EQ(p["gc"]["packs_deleted"], 0) << pruned.out;
  EXPECT_GT(p["gc"]["packs_pending"].get<uint64_t>(), 0u) << pruned.out;
  ASSERT_EQ(p["gc"]["waiting_for"].size(), 1u) << pruned.out;
  EXPECT_TRUE(std::regex_match(p["gc"]["waiting_for"][0].get<std::string>(),
                               std::regex("pid \\d+ since \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ")))
      << pruned.out;
  auto text = bv({"gc"}, "", maint);
  ASSERT_EQ(text.exit_status, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("\ngc: \\d+ pack\\(s\\) \\([^)]+\\) and 0 manifest\\(s\\) are "
                                                     "condemned and wait for 1 backup\\(s\\) still running \\(pid \\d+ "
                                                     "since [^)]+\\); the next gc deletes what they leave unused\n")))
      << text.out;
  auto status = bv({"status"}, "", maint);
  EXPECT_NE(status.out.find("  backups in progress: pid "), std::string::npos) << status.out;
  EXPECT_TRUE(std::regex_search(status.out, std::regex("\n  condemned by gc: \\d+ pack\\(s\\) and 0 manifest\\(s\\), "
                                                       "deleted by the first gc after the backups running when it "
                                                       "condemned them\n")))
      << status.out;
  // Once the backup has committed, gc (waiting for it with --lock-wait) deletes.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::ofstream(go) << "go";
  });
  auto collected = bv({"--json", "--lock-wait", "120", "gc"}, "", maint);
  release.join();
  CliRun b = busy.get();
  ASSERT_EQ(b.exit_status, 0) << b.err;
  ASSERT_EQ(collected.exit_status, 0) << collected.err;
  const uint64_t gen = nlohmann::json::parse(b.out)["generation"].get<uint64_t>();
  EXPECT_EQ(gen, 3u);
  auto c = nlohmann::json::parse(collected.out);
  EXPECT_GT(c["packs_deleted"].get<uint64_t>() + c["packs_rewritten"].get<uint64_t>(), 0u) << collected.out;
  EXPECT_EQ(c["packs_pending"], 0) << collected.out;
  for (const char* cache : {"busy-cache", "maint-cache"}) {
    SCOPED_TRACE(cache);
    const std::vector<std::string> env = {"BLKVAULT_CACHE_DIR=" + dir_ / cache};
    const std::string to = dir_ / (std::string(cache) + "-restored");
    auto r = bv({"-q", "restore", "--generation", std::to_string(gen), "--device", dev, "--to", to}, "", env);
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_TRUE(read_whole(to) == read_whole(dev));
    auto v = bv({"verify", "--data"}, "", env);
    EXPECT_EQ(v.exit_status, 0) << v.out << v.err;
  }
}

// A backup killed in the middle leaves its marker; it does not keep gc from
// deleting for ever: at once on its own host (the pid is gone), after
// BLKVAULT_LOCK_STALE_S from another.
TEST_F(S3CliTest, TheStaleBackupMarkerOfAKilledWriterDoesNotBlockGcForEver) {
  init_repo();
  std::mt19937_64 rng(13);
  const std::string dev = make_device("a.img", kDeviceSize / 4, 9);
  auto first = backup_ok({dev});  // generation 1: its chunks are garbage once 2 is kept alone
  sim_write(dev, 0, random_bytes(rng, kDeviceSize / 4));
  ASSERT_EQ(backup_ok({dev})["generation"], 2);
  const std::string started = dir_ / "started";
  const std::string hang = "echo $$ $PPID > " + started + ".tmp && mv " + started + ".tmp " + started + "; exec sleep 600";
  auto killed = std::async(std::launch::async, [&] {
    return run_blkvault({"backup", "--diff-storage-size", "4M", "--diff-storage-limit", "16M", dev},
                        {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=sim:" + dir_ / "victim-sim",
                         "BLKVAULT_PASSWORD=" + std::string(kPassphrase), "BLKVAULT_CACHE_DIR=" + dir_ / "victim-cache",
                         "BLKVAULT_SIM_AFTER_TAKE=" + hang},
                        "", "victim");
  });
  for (int i = 0; i < 600 && !std::filesystem::exists(started); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(std::filesystem::exists(started));
  // The hook's shell wrote its own pid and its parent's (the backup's).
  std::ifstream pids(started);
  pid_t shell = 0, backup = 0;
  pids >> shell >> backup;
  ASSERT_GT(backup, 0);
  const std::string victim = std::to_string(backup);
  ASSERT_EQ(::kill(backup, SIGKILL), 0);
  CliRun k = killed.get();
  EXPECT_EQ(k.exit_status, 128 + SIGKILL);
  ::kill(shell, SIGKILL);  // the orphaned hook
  const std::vector<std::string> other = {"BLKVAULT_REPO=" + repo_, "BLKVAULT_PASSWORD=" + std::string(kPassphrase),
                                          "BLKVAULT_CACHE_DIR=" + dir_ / "other-cache"};
  // From another host the marker is alive for 30 minutes by default: gc
  // condemns and waits for it...
  auto held = run_blkvault({"--json", "prune", "--keep-last", "1", "--gc"}, other, "", "other");
  ASSERT_EQ(held.exit_status, 0) << held.err;
  auto h = nlohmann::json::parse(held.out);
  EXPECT_EQ(h["gc"]["packs_deleted"], 0) << held.out;
  EXPECT_GT(h["gc"]["packs_pending"].get<uint64_t>(), 0u) << held.out;
  ASSERT_EQ(h["gc"]["waiting_for"].size(), 1u) << held.out;
  EXPECT_EQ(h["gc"]["waiting_for"][0].get<std::string>().rfind("pid " + victim + " since ", 0), 0u) << held.out;
  // ...and after BLKVAULT_LOCK_STALE_S without a sign of life removes it and deletes.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  auto env = other;
  env.push_back("BLKVAULT_LOCK_STALE_S=2");
  auto gc = run_blkvault({"--json", "gc"}, env, "", "other");
  ASSERT_EQ(gc.exit_status, 0) << gc.err;
  EXPECT_NE(gc.err.find("removed the stale backup marker of pid " + victim + " since "), std::string::npos) << gc.err;
  auto g = nlohmann::json::parse(gc.out);
  EXPECT_GT(g["packs_deleted"].get<uint64_t>() + g["packs_rewritten"].get<uint64_t>(), 0u) << gc.out;
  EXPECT_EQ(g["packs_pending"], 0) << gc.out;
  const std::string to = dir_ / "restored";
  auto r = run_blkvault({"-q", "restore", "--generation", "2", "--device", dev, "--to", to}, other, "", "other");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_TRUE(read_whole(to) == read_whole(dev));
}
}  // namespace
}  // namespace blkvault::test
