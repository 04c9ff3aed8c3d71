// `blkvault repair index` and `blkvault repair packs` through the real
// executable (issue 13): the index rebuilt after it was deleted or corrupted;
// a flipped byte in one blob reported (dry run changes nothing), moved aside,
// stored again by the next backup of the device, so every generation restores
// byte-identical; a changed source leaves the older generation damaged and the
// reports say so; a kill at every crash point of `repair packs --apply` leaves
// the repository consistent and a rerun finishes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "app/backup_support.h"
#include "repo/repository.h"

namespace blkvault::test {
namespace {

namespace fs = std::filesystem;

class RepairCliTest : public BackupCliTest {
 protected:
  static constexpr uint64_t kSize = 16 * kChunk;
  static constexpr uint64_t kBad = 2;  // the chunk index flipped (not zeros, not deduplicated)

  // Generation 1 of a.img, then a tracked write to chunk 12 and generation 2.
  void two_generations() {
    init_repo();
    a_ = make_device("a.img", kSize, 21);
    backup_ok({a_});
    sim_write(a_, 12 * kChunk + 7, std::string(5000, 'q'));
    backup_ok({a_});
    image_[1] = restore_bytes("1", a_);
    image_[2] = restore_bytes("2", a_);
  }

  struct Blob {
    std::string pack;  // packs/…
    uint64_t offset = 0;
    std::string hex;
  };
  // Where chunk `index` of a in `generation` is stored.
  Blob blob_of(uint64_t generation, uint64_t index) {
    auto r = repo::Repository::open(repo_, repo_options());
    EXPECT_TRUE(r) << r.error().message();
    auto img = (*r)->device_image(generation, a_);
    EXPECT_TRUE(img) << img.error().message();
    for (const auto& c : img->chunks) {
      if (c.chunk_index == index) return {img->packs[c.pack], c.offset, repo::to_hex(c.id)};
    }
    ADD_FAILURE() << "no chunk " << index;
    return {};
  }
  std::string index_path() {
    auto r = repo::Repository::open(repo_, repo_options());
    EXPECT_TRUE(r) << r.error().message();
    return (*r)->index_path();
  }
  // Flips one byte of the blob's stored bytes (past its 48-byte header).
  void flip(const Blob& b) {
    const std::string path = repo_ + "/" + b.pack;
    fs::permissions(path, fs::perms::owner_write, fs::perm_options::add);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(b.offset + 48 + 100));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(static_cast<std::streamoff>(b.offset + 48 + 100));
    f.write(&c, 1);
  }
  // Every file of the repository and the index cache: name -> bytes.
  std::map<std::string, std::string> files() {
    std::map<std::string, std::string> out;
    for (const char* top : {"repo", "cache"}) {
      if (!fs::exists(dir_ / top)) continue;
      for (const auto& e : fs::recursive_directory_iterator(dir_ / top)) {
        if (e.is_regular_file()) out[e.path().string()] = read_whole(e.path().string());
      }
    }
    return out;
  }
  static std::string range(uint64_t index) {
    return "bytes " + std::to_string(index * kChunk) + "-" + std::to_string((index + 1) * kChunk - 1);
  }

  std::string a_;
  std::map<int, std::string> image_;
};

TEST_F(RepairCliTest, RepairIndexRebuildsADeletedIndexAndEveryGenerationRestoresByteIdentical) {
  two_generations();
  const std::string index = index_path();
  auto healthy = bv({"repair", "index"});
  EXPECT_EQ(healthy.exit_status, 0) << healthy.out << healthy.err;
  EXPECT_EQ(healthy.out, "repair index (dry run): index " + index +
                             " agrees with the repository's files; nothing to repair\n");

  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(index + suffix);
  auto dry = bv({"repair", "index"});
  EXPECT_EQ(dry.exit_status, 3) << dry.out << dry.err;
  EXPECT_EQ(dry.out, "problem: index " + index + " is missing\nrepair index (dry run): index " + index +
                         " is missing; --apply rebuilds it from packs and manifests\n");
  EXPECT_EQ(dry.err, "blkvault: repair index: the index of " + repo_ +
                         " is missing (listed above); nothing was changed: 'blkvault repair index --apply' rebuilds it\n");
  EXPECT_FALSE(fs::exists(index)) << "a dry run creates nothing";

  auto apply = bv({"repair", "index", "--apply"});
  ASSERT_EQ(apply.exit_status, 0) << apply.out << apply.err;
  EXPECT_EQ(apply.out.rfind("problem: index " + index + " is missing\nrepair index: rebuilt " + index +
                                " from the repository's files (it was missing): 2 generation(s), ",
                            0),
            0u)
      << apply.out;
  EXPECT_EQ(restore_bytes("1", a_), image_[1]);
  EXPECT_EQ(restore_bytes("2", a_), image_[2]);
  EXPECT_EQ(bv({"repair", "index"}).exit_status, 0);
}

TEST_F(RepairCliTest, RepairIndexRebuildsACorruptedIndexKeepingTheOldOneAside) {
  two_generations();
  const std::string index = index_path();
  ASSERT_FALSE(fs::exists(index + "-wal") && fs::file_size(index + "-wal") > 0);
  {
    std::fstream f(index, std::ios::in | std::ios::out | std::ios::binary);
    f.write(std::string(100, '\x5a').data(), 100);  // the database header: no longer a database
  }
  const std::string damaged = read_whole(index);
  auto dry = bv({"--json", "repair", "index"});
  EXPECT_EQ(dry.exit_status, 3) << dry.out << dry.err;
  auto j = nlohmann::json::parse(dry.out);
  EXPECT_EQ(j["state"], "damaged") << j.dump();
  EXPECT_EQ(j["findings"].size(), 1u);
  EXPECT_EQ(read_whole(index), damaged) << "a dry run changes nothing";

  auto apply = bv({"--json", "repair", "index", "--apply"});
  ASSERT_EQ(apply.exit_status, 0) << apply.out << apply.err;
  j = nlohmann::json::parse(apply.out);
  EXPECT_EQ(j["state"], "damaged");
  EXPECT_EQ(j["generations"], 2);
  ASSERT_TRUE(j["kept_as"].is_string()) << j.dump();
  EXPECT_EQ(read_whole(j["kept_as"].get<std::string>()), damaged) << "the damaged index is kept for inspection";
  EXPECT_EQ(restore_bytes("1", a_), image_[1]);
  EXPECT_EQ(restore_bytes("2", a_), image_[2]);
  auto verify = bv({"verify", "--data"});
  EXPECT_EQ(verify.exit_status, 0) << verify.out << verify.err;
}

TEST_F(RepairCliTest, RepairPacksMovesADamagedBlobAsideAndTheNextBackupStoresItAgain) {
  two_generations();
  const Blob bad = blob_of(1, kBad);
  ASSERT_EQ(blob_of(2, kBad).hex, bad.hex) << "generation 2 shares the chunk";
  flip(bad);

  // Dry run: the chunk, both generations, the range; nothing changes.
  const auto before = files();
  auto dry = bv({"repair", "packs"});
  EXPECT_EQ(dry.exit_status, 3) << dry.out << dry.err;
  EXPECT_EQ(dry.out.rfind("damaged: " + bad.pack + " at offset " + std::to_string(bad.offset) + ": chunk " + bad.hex +
                              ": stored bytes fail their checksum\n",
                          0),
            0u)
      << dry.out;
  EXPECT_NE(dry.out.find("\n  generation 1 device " + a_ + " " + range(kBad) + "\n  generation 2 device " + a_ + " " +
                         range(kBad) + "\n  with --apply: moved aside; the next backup of " + a_ + " re-reads " +
                         range(kBad) + "\nrepair packs (dry run): checked "),
            std::string::npos)
      << dry.out;
  EXPECT_NE(dry.out.find(": 1 damaged, 0 missing, 0 lost\n"), std::string::npos) << dry.out;
  EXPECT_EQ(dry.err, "blkvault: repair packs " + repo_ +
                         ": found 1 damaged, 0 missing and 0 lost chunk(s) (listed above); nothing was changed: "
                         "--apply moves the damaged ones aside\n");
  EXPECT_TRUE(files() == before) << "the dry run changed a file";
  const std::string damaged_pack = read_whole(repo_ + "/" + bad.pack);

  // Apply: the pack is rewritten without the blob and kept under damaged/.
  auto apply = bv({"repair", "packs", "--apply"});
  ASSERT_EQ(apply.exit_status, 0) << apply.out << apply.err;
  EXPECT_EQ(apply.out.rfind("missing: chunk " + bad.hex + " is in no pack (moved aside from " + bad.pack +
                                ")\n  generation 1 device " + a_ + " " +
                                range(kBad) + "\n  generation 2 device " + a_ + " " + range(kBad) +
                                "\n  the next backup of " + a_ + " re-reads " + range(kBad) + "\nmoved aside: pack " +
                                bad.pack + ": 1 damaged chunk(s) removed; the pack is kept as damaged/" + bad.pack +
                                "; its ",
                            0),
            0u)
      << apply.out;
  EXPECT_FALSE(fs::exists(repo_ + "/" + bad.pack));
  EXPECT_EQ(read_whole(repo_ + "/damaged/" + bad.pack), damaged_pack);
  const auto record = nlohmann::json::parse(read_whole(repo_ + "/damaged/" + bad.pack + ".json"));
  EXPECT_EQ(record["pack"], bad.pack);
  ASSERT_EQ(record["chunks"].size(), 1u);
  EXPECT_EQ(record["chunks"][0]["id"], bad.hex);

  // verify --data: the chunk is missing now, not checksum damage.
  auto verify = bv({"--json", "verify", "--data"});
  EXPECT_EQ(verify.exit_status, 3) << verify.out << verify.err;
  auto v = nlohmann::json::parse(verify.out);
  EXPECT_TRUE(v["problems"].empty()) << v.dump();
  ASSERT_EQ(v["damage"].size(), 1u) << v.dump();
  EXPECT_EQ(v["damage"][0]["what"], "chunk " + bad.hex + " is in no pack");
  EXPECT_EQ(v["damage"][0]["affected"].size(), 2u);
  auto again = bv({"repair", "packs"});
  EXPECT_EQ(again.exit_status, 3) << again.err;
  EXPECT_NE(again.out.find(": 0 damaged, 1 missing, 0 lost; the next backup of each device listed re-reads the "
                           "missing ranges\n"),
            std::string::npos)
      << again.out;

  // The next backup re-reads that chunk (and nothing else changed): it is whole again.
  auto b = backup_ok({a_});
  ASSERT_EQ(b["devices"].size(), 1u);
  EXPECT_EQ(b["devices"][0]["mode"], "incremental");
  EXPECT_EQ(b["devices"][0]["read_bytes"], kChunk) << b.dump();
  EXPECT_EQ(restore_bytes("1", a_), image_[1]);
  EXPECT_EQ(restore_bytes("2", a_), image_[2]);
  EXPECT_EQ(restore_bytes("3", a_), read_whole(a_));
  auto clean = bv({"verify", "--data"});
  EXPECT_EQ(clean.exit_status, 0) << clean.out << clean.err;
  auto done = bv({"repair", "packs"});
  EXPECT_EQ(done.exit_status, 0) << done.out << done.err;
  EXPECT_NE(done.out.find(": 0 damaged, 0 missing, 0 lost\n"), std::string::npos) << done.out;
}

TEST_F(RepairCliTest, WhenTheSourceChangedTheOlderGenerationStaysDamagedAndTheReportsSaySo) {
  init_repo();
  a_ = make_device("a.img", kSize, 22);
  backup_ok({a_});
  image_[1] = restore_bytes("1", a_);
  const Blob bad = blob_of(1, kBad);
  flip(bad);
  ASSERT_EQ(bv({"-q", "repair", "packs", "--apply"}).exit_status, 0);
  // The whole chunk is overwritten on the source: its old content is gone.
  sim_write(a_, kBad * kChunk, std::string(kChunk, 'z'));

  auto b = bv({"backup", a_});
  ASSERT_EQ(b.exit_status, 0) << b.err;
  EXPECT_NE(b.err.find("warning: " + a_ + " " + range(kBad) + ": chunk " + bad.hex +
                       " stays missing: generation 2 re-read it and the source no longer holds that content; "
                       "generation(s) 1 stay damaged (blkvault repair packs lists them)\n"),
            std::string::npos)
      << b.err;
  EXPECT_NE(b.err.find(a_ + ": re-read 1 chunk(s) the repository was missing: 0 stored again"), std::string::npos)
      << b.err;
  EXPECT_EQ(restore_bytes("2", a_), read_whole(a_));

  auto r = bv({"repair", "packs"});
  EXPECT_EQ(r.exit_status, 3) << r.err;
  EXPECT_EQ(r.out.rfind("lost: chunk " + bad.hex + " is in no pack\n  generation 1 device " + a_ + " " + range(kBad) +
                            "\n  stays damaged: generation 2 re-read " + range(kBad) + " of " + a_ +
                            " and the source no longer holds this content (generation(s) 1 cannot be restored whole)\n",
                        0),
            0u)
      << r.out;
  EXPECT_EQ(r.err, "blkvault: repair packs " + repo_ +
                       ": found 0 damaged, 0 missing and 1 lost chunk(s) (listed above); nothing was changed\n");
  auto apply = bv({"repair", "packs", "--apply"});
  EXPECT_EQ(apply.exit_status, 3);
  EXPECT_EQ(apply.err, "blkvault: repair packs " + repo_ +
                           ": 1 chunk(s) stay damaged: the source no longer holds their content (listed above)\n");
  auto restore = bv({"restore", "--generation", "1", "--device", a_, "--to", dir_ / "old.img"});
  EXPECT_EQ(restore.exit_status, 3) << restore.err;
  EXPECT_FALSE(fs::exists(dir_ / "old.img"));
}

TEST_F(RepairCliTest, APackThatIsGoneIsForgottenAndTheNextBackupStoresItsChunksAgain) {
  // One generation, so that everything the pack held is still on the source.
  init_repo();
  a_ = make_device("a.img", kSize, 23);
  backup_ok({a_});
  image_[1] = restore_bytes("1", a_);
  const Blob in = blob_of(1, kBad);
  fs::remove(repo_ + "/" + in.pack);
  auto dry = bv({"--json", "repair", "packs"});
  EXPECT_EQ(dry.exit_status, 3) << dry.err;
  auto j = nlohmann::json::parse(dry.out);
  ASSERT_GE(j["damaged"].get<int>(), 1) << j.dump();
  EXPECT_EQ(j["bad_chunks"][0]["what"].get<std::string>().find(": pack " + in.pack + " is gone"),
            j["bad_chunks"][0]["what"].get<std::string>().size() - (": pack " + in.pack + " is gone").size())
      << j.dump();
  auto apply = bv({"--json", "repair", "packs", "--apply"});
  ASSERT_EQ(apply.exit_status, 0) << apply.out << apply.err;
  j = nlohmann::json::parse(apply.out);
  ASSERT_EQ(j["moved"].size(), 1u) << j.dump();
  EXPECT_EQ(j["moved"][0]["pack"], in.pack);
  EXPECT_TRUE(j["moved"][0]["copy"].is_null()) << "nothing to copy";
  EXPECT_TRUE(fs::exists(repo_ + "/damaged/" + in.pack + ".json"));
  backup_ok({a_});
  EXPECT_EQ(restore_bytes("1", a_), image_[1]);
  EXPECT_EQ(restore_bytes("2", a_), image_[1]);
  auto clean = bv({"verify", "--data"});
  EXPECT_EQ(clean.exit_status, 0) << clean.out << clean.err;
}

TEST_F(RepairCliTest, RepairPacksKilledAtAnyCrashPointLeavesTheRepositoryConsistentAndARerunFinishes) {
  two_generations();
  const Blob bad = blob_of(1, kBad);
  flip(bad);
  const std::string pristine = dir_ / "pristine";
  fs::create_directories(pristine);
  for (const char* n : {"repo", "sim", "a.img", "cache"}) fs::copy(dir_ / n, pristine + "/" + n, fs::copy_options::recursive);
  auto reset = [&] {
    for (const char* n : {"repo", "sim", "a.img", "cache"}) {
      fs::remove_all(dir_ / n);
      fs::copy(pristine + "/" + n, dir_ / n, fs::copy_options::recursive);
    }
  };
  const std::string trace = dir_ / "trace";
  ASSERT_EQ(bv({"-q", "repair", "packs", "--apply"}, "", {"BLKVAULT_CRASH_TRACE=" + trace}).exit_status, 0);
  int total = 0;
  {
    std::ifstream in(trace);
    for (std::string line; std::getline(in, line);) ++total;
  }
  ASSERT_GE(total, 6) << "new pack, copy, record, index commit, removal";
  for (int k = 1; k <= total; ++k) {
    SCOPED_TRACE("repair packs --apply killed at crash point " + std::to_string(k) + " of " + std::to_string(total));
    reset();
    auto killed = bv({"-q", "repair", "packs", "--apply"}, "", {"BLKVAULT_CRASH_AT=" + std::to_string(k)});
    ASSERT_EQ(killed.exit_status, 128 + 9) << killed.out << killed.err;
    if (k % 2 == 0) {
      // An index rebuilt now must not bring the damaged blob back as good.
      ASSERT_EQ(bv({"-q", "repair", "index", "--apply"}).exit_status, 0);
    }
    // Consistent: exactly the one chunk is bad (damaged or missing), nothing else.
    auto v = nlohmann::json::parse(bv({"--json", "verify", "--data"}).out);
    EXPECT_TRUE(v["problems"].empty()) << v.dump();
    ASSERT_EQ(v["damage"].size(), 1u) << v.dump();
    EXPECT_NE(v["damage"][0]["what"].get<std::string>().find(bad.hex), std::string::npos) << v.dump();
    // The rerun finishes: the damaged pack is out of packs/, the chunk missing, not damaged.
    auto rerun = bv({"--json", "repair", "packs", "--apply"});
    ASSERT_EQ(rerun.exit_status, 0) << rerun.out << rerun.err;
    EXPECT_FALSE(fs::exists(repo_ + "/" + bad.pack));
    EXPECT_TRUE(fs::exists(repo_ + "/damaged/" + bad.pack));
    auto dry = nlohmann::json::parse(bv({"--json", "repair", "packs"}).out);
    EXPECT_EQ(dry["damaged"], 0) << dry.dump();
    EXPECT_EQ(dry["missing"], 1) << dry.dump();
    auto b = backup_ok({a_});
    EXPECT_EQ(b["devices"][0]["read_bytes"], kChunk) << b.dump();
    EXPECT_EQ(restore_bytes("1", a_), image_[1]);
    EXPECT_EQ(restore_bytes("2", a_), image_[2]);
    auto clean = bv({"verify", "--data"});
    EXPECT_EQ(clean.exit_status, 0) << clean.out << clean.err;
    if (HasFatalFailure()) return;
  }
  std::printf("[ crash    ] repair packs --apply: %d crash points, each killed and recovered\n", total);
}

}  // namespace
}  // namespace blkvault::test
