// list, verify, status, cleanup and index rebuild through the real executable.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "app/backup_support.h"
#include "repo/lock.h"
#include "repo/repository.h"

namespace blkvault::test {
namespace {
namespace fs = std::filesystem;

class InspectCliTest : public BackupCliTest {
 protected:
  // Two devices, a full backup and an incremental one.
  void two_generations() {
    init_repo();
    a_ = make_device("a.img", 8 * kChunk, 1);
    b_ = make_device("b.img", 4 * kChunk + 4096, 2);
    backup_ok({a_, b_});
    sim_write(a_, 3 * kChunk + 17, "changed");
    backup_ok({a_, b_});
  }
  // Flips one byte inside the stored data of `device`'s chunk at `chunk` in generation 1.
  void damage_chunk(const std::string& device, uint64_t chunk) {
    auto repo = repo::Repository::open(repo_, repo_options());
    ASSERT_TRUE(repo) << repo.error().message();
    auto img = (*repo)->device_image(1, device);
    ASSERT_TRUE(img) << img.error().message();
    const repo::ChunkRef* ref = nullptr;
    for (const auto& c : img->chunks) {
      if (c.chunk_index == chunk) ref = &c;
    }
    ASSERT_NE(ref, nullptr);
    const std::string pack = repo_ + "/" + img->packs[ref->pack];
    fs::permissions(pack, fs::perms::owner_write, fs::perm_options::add);
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(ref->offset + repo::BlobHeader::kSize + 5);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(at);
    f.write(&c, 1);
  }

  std::string a_, b_;
};

TEST_F(InspectCliTest, ListOnAnEmptyRepositorySaysSo) {
  init_repo();
  auto r = bv({"list"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out, "no generations yet\n");
  auto j = bv({"--json", "list"});
  EXPECT_EQ(nlohmann::json::parse(j.out)["generations"], nlohmann::json::array());
}

TEST_F(InspectCliTest, ListShowsEveryGenerationAndEachDevicesHistory) {
  two_generations();
  auto r = bv({"--json", "list"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["generations"].size(), 2u);
  EXPECT_EQ(j["generations"][0]["id"], 1);
  EXPECT_EQ(j["generations"][0]["state"], "complete");
  EXPECT_EQ(j["generations"][0]["devices"][0]["name"], a_);
  EXPECT_EQ(j["generations"][0]["devices"][0]["mode"], "full");
  EXPECT_EQ(j["generations"][1]["devices"][0]["mode"], "incremental");
  EXPECT_EQ(j["generations"][1]["devices"][0]["read_bytes"], kChunk);
  EXPECT_EQ(j["generations"][1]["devices"][1]["read_bytes"], 0);

  auto human = bv({"list", "--device", b_});
  ASSERT_EQ(human.exit_status, 0) << human.err;
  EXPECT_EQ(std::count(human.out.begin(), human.out.end(), '\n'), 3) << human.out;  // header + 2 generations
  EXPECT_NE(human.out.find("full"), std::string::npos);
  EXPECT_NE(human.out.find("incremental"), std::string::npos);

  auto unknown = bv({"list", "--device", "/dev/nope"});
  EXPECT_EQ(unknown.exit_status, 2);
  EXPECT_EQ(unknown.err, "blkvault: device /dev/nope: no generation has it (devices in the repository: " + a_ +
                             ", " + b_ + ")\n");
}

TEST_F(InspectCliTest, VerifyIsCleanThenFindsAFlippedByteWithTheRangesItSpoils) {
  two_generations();
  auto clean = bv({"verify", "--data"});
  ASSERT_EQ(clean.exit_status, 0) << clean.err;
  EXPECT_NE(clean.out.find("verified 2 generation(s): "), std::string::npos) << clean.out;
  EXPECT_NE(clean.out.find("read and re-hashed: no damage"), std::string::npos) << clean.out;

  damage_chunk(a_, 5);  // chunk 5 of a.img did not change: both generations use it
  auto meta = bv({"verify"});
  EXPECT_EQ(meta.exit_status, 0) << "metadata checks cannot see a data byte: " << meta.out << meta.err;
  EXPECT_NE(meta.out.find("(metadata only; --data reads every byte)"), std::string::npos);

  auto data = bv({"verify", "--data"});
  EXPECT_EQ(data.exit_status, 3);
  EXPECT_EQ(data.err, "blkvault: verify " + repo_ + ": found 0 problem(s) and 1 damaged chunk(s) (listed above)\n");
  const std::string range = " device " + a_ + " bytes " + std::to_string(5 * kChunk) + "-" +
                            std::to_string(6 * kChunk - 1) + "\n";
  EXPECT_NE(data.out.find("damaged: packs/"), std::string::npos) << data.out;
  EXPECT_NE(data.out.find("stored bytes fail their checksum"), std::string::npos) << data.out;
  EXPECT_NE(data.out.find("  generation 1" + range), std::string::npos) << data.out;
  EXPECT_NE(data.out.find("  generation 2" + range), std::string::npos) << data.out;

  auto json = bv({"--json", "verify", "--data", "--generation", "2"});
  EXPECT_EQ(json.exit_status, 3);
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["clean"], false);
  ASSERT_EQ(j["damage"].size(), 1u);
  ASSERT_EQ(j["damage"][0]["affected"].size(), 1u);
  EXPECT_EQ(j["damage"][0]["affected"][0]["generation"], 2);
  EXPECT_EQ(j["damage"][0]["affected"][0]["offset_bytes"], 5 * kChunk);

  // Restoring a generation that needs the damaged chunk fails with the damage exit code.
  auto restore = bv({"restore", "--generation", "1", "--device", a_, "--to", dir_ / "out.img"});
  EXPECT_EQ(restore.exit_status, 3) << restore.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.img")) << "a failed restore must not leave a wrong image behind";
  // b.img does not need it.
  auto other = bv({"-q", "restore", "--generation", "1", "--device", b_, "--to", dir_ / "b.out"});
  EXPECT_EQ(other.exit_status, 0) << other.err;
}

TEST_F(InspectCliTest, VerifyRejectsAnUnknownGeneration) {
  two_generations();
  auto r = bv({"verify", "--generation", "99"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: generation 99 does not exist\n");
  auto bad = bv({"verify", "--generation", "x1"});
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_EQ(bad.err, "blkvault: 'x1' is not a generation id (a number, or 'latest')\n");
}

TEST_F(InspectCliTest, StatusShowsModuleRepositoryAndLockHolder) {
  two_generations();
  {
    auto lock = repo::RepoLock::acquire(repo_, 0);
    ASSERT_TRUE(lock);
    auto r = bv({"status"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_NE(r.out.find("module: simulated veeamblksnap 6.3"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("snap number"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("snapshots held: none"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("generations: 2 committed, 0 failed"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("  lock: held by pid " + std::to_string(getpid()) + " on host "), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("    " + a_ + ": generation 2 at "), std::string::npos) << r.out;
    // A writer is refused meanwhile, with its own exit code.
    auto w = bv({"backup", a_});
    EXPECT_EQ(w.exit_status, 4);
    EXPECT_EQ(w.err.rfind("blkvault: repository " + repo_ + " is locked by pid " + std::to_string(getpid()), 0), 0u)
        << w.err;
  }
  auto j = nlohmann::json::parse(bv({"--json", "status"}).out);
  EXPECT_EQ(j["repository"]["lock_holder"], nullptr);
  EXPECT_EQ(j["repository"]["generations_committed"], 2);
  EXPECT_EQ(j["module"]["tracked_devices"].size(), 2u);
  EXPECT_EQ(j["repository"]["last_good"][0]["generation"], 2);
}

TEST_F(InspectCliTest, StatusWithoutAModuleStillReportsTheRepository) {
  two_generations();
  auto r = run_blkvault({"status"}, {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=/nonexistent/veeamblksnap",
                                     "BLKVAULT_PASSWORD=" + std::string(kPassphrase), "BLKVAULT_CACHE_DIR=" + dir_ / "cache"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("module: not available: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("repository: " + repo_), std::string::npos);
}

TEST_F(InspectCliTest, CleanupSaysWhenThereIsNothingToRelease) {
  two_generations();
  auto r = bv({"cleanup"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out, "no snapshot left behind by blkvault\n");
}

TEST_F(InspectCliTest, ALostIndexIsRebuiltAndNothingIsLost) {
  two_generations();
  const std::string g1 = restore_bytes("1", a_);
  const std::string g2 = restore_bytes("2", a_);
  for (const char* s : {"", "-wal", "-shm"}) fs::remove(repo_ + "/index.sqlite" + s);
  auto list = bv({"--json", "list"});
  ASSERT_EQ(list.exit_status, 0) << list.err;
  EXPECT_EQ(nlohmann::json::parse(list.out)["generations"].size(), 2u);
  auto rebuilt = bv({"index", "rebuild"});
  ASSERT_EQ(rebuilt.exit_status, 0) << rebuilt.err;
  EXPECT_EQ(rebuilt.out.rfind("index rebuilt from the repository's files: 2 generation(s), ", 0), 0u) << rebuilt.out;
  EXPECT_EQ(restore_bytes("1", a_), g1);
  EXPECT_EQ(restore_bytes("latest", a_), g2);
  // And the CBT baseline survived with it: the next backup is incremental.
  auto next = backup_ok({a_});
  EXPECT_EQ(next["devices"][0]["mode"], "incremental");
  EXPECT_EQ(next["devices"][0]["read_bytes"], 0);
}

}  // namespace
}  // namespace blkvault::test
