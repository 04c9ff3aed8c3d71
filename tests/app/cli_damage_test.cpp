// Specific damage through the real executable (issue 8): a truncated pack, a
// deleted pack, an index of a newer format, a foreign directory, a config of
// a newer format. Each has its own one-line message and exit status
// (docs/CLI.md), and the generations that do not need what is damaged still
// restore.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "app/backup_support.h"
#include "repo/repository.h"

namespace blkvault::test {
namespace {

namespace fs = std::filesystem;

class DamageCliTest : public BackupCliTest {
 protected:
  std::string a_, b_;

  // An unencrypted repository (its index in the repository) with two devices
  // in generation 1 and a change of a in generation 2.
  void two_generations() {
    repo::InitOptions o;
    o.chunk_size = kChunk;
    o.pack_size = 1 << 20;
    ASSERT_TRUE(repo::init_repository(repo_, o));
    a_ = make_device("a.img", 2 << 20, 5);
    b_ = make_device("b.img", 2 << 20, 6);
    backup_ok({a_});
    backup_ok({b_});
  }
  std::vector<std::string> packs_of(const std::string& generation, const std::string& device) {
    auto r = repo::Repository::open(repo_, {});
    EXPECT_TRUE(r) << r.error().message();
    auto img = (*r)->device_image(std::stoull(generation), device);
    EXPECT_TRUE(img) << img.error().message();
    return img->packs;
  }
  static int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
};

TEST_F(DamageCliTest, ATruncatedPackIsReportedByVerifyAndItsRestoreFailsWithExitThree) {
  two_generations();
  const auto packs = packs_of("1", a_);
  ASSERT_FALSE(packs.empty());
  const std::string pack = repo_ + "/" + packs[0];
  const auto size = fs::file_size(pack);
  fs::permissions(pack, fs::perms::owner_write, fs::perm_options::add);
  fs::resize_file(pack, size / 2);

  auto v = bv({"verify"});
  EXPECT_EQ(v.exit_status, 3) << v.out << v.err;
  EXPECT_NE(v.out.find("pack " + packs[0] + " has " + std::to_string(size / 2) + " bytes, the index says " +
                       std::to_string(size)),
            std::string::npos)
      << v.out;
  EXPECT_EQ(v.err.rfind("blkvault: verify " + repo_ + ": found ", 0), 0u) << v.err;
  EXPECT_EQ(lines(v.err), 1) << v.err;

  auto r = bv({"restore", "--generation", "1", "--device", a_, "--to", dir_ / "a.out"});
  EXPECT_EQ(r.exit_status, 3) << r.err;
  EXPECT_EQ(r.err.rfind("blkvault: restoring " + a_ + " of generation 1 to " + dir_ / "a.out" + ": ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("of " + a_ + " in generation 1"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "a.out"));
  // b is in other packs: it still restores.
  if (packs_of("2", b_) != packs) {
    EXPECT_TRUE(restore_bytes("2", b_) == read_whole(b_));
  }
}

TEST_F(DamageCliTest, ADeletedPackIsReportedWithWhatItSpoilsAndItsRestoreFailsWithExitThree) {
  two_generations();
  const auto packs = packs_of("1", a_);
  fs::remove(repo_ + "/" + packs[0]);

  auto v = bv({"verify"});
  EXPECT_EQ(v.exit_status, 3) << v.out << v.err;
  EXPECT_NE(v.out.find("damaged: chunk "), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("pack " + packs[0] + ": "), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("  generation 1 device " + a_ + " bytes "), std::string::npos) << v.out;
  EXPECT_EQ(lines(v.err), 1) << v.err;

  auto r = bv({"restore", "--generation", "1", "--device", a_, "--to", dir_ / "a.out"});
  EXPECT_EQ(r.exit_status, 3) << r.err;
  EXPECT_NE(r.err.find(packs[0]), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("of " + a_ + " in generation 1"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "a.out"));
  if (packs_of("2", b_) != packs) {
    EXPECT_TRUE(restore_bytes("2", b_) == read_whole(b_));
  }
}

TEST_F(DamageCliTest, AnIndexOfANewerFormatIsRefusedNotRebuiltAway) {
  two_generations();
  // PRAGMA user_version is the big-endian u32 at offset 60 of the database header.
  const std::string index = repo_ + "/index.sqlite";
  ASSERT_FALSE(fs::exists(index + "-wal") && fs::file_size(index + "-wal") > 0);
  {
    std::fstream f(index, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(60);
    const char v4[4] = {0, 0, 0, 4};  // one above this blkvault's schema (3: the smaller chunk_map)
    f.write(v4, 4);
  }
  const auto before = fs::file_size(index);
  auto r = bv({"list"});
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_EQ(r.err, "blkvault: index " + index +
                       " has schema version 4; this blkvault knows up to 3 (upgrade blkvault, or delete the index: "
                       "the next run rebuilds it from packs and manifests)\n");
  EXPECT_EQ(fs::file_size(index), before);
  auto w = bv({"gc"});
  EXPECT_EQ(w.exit_status, 2) << w.err;
  // Deleting it, as the message says, brings everything back.
  fs::remove(index);
  EXPECT_TRUE(restore_bytes("1", a_) == read_whole(a_));
  EXPECT_TRUE(restore_bytes("2", b_) == read_whole(b_));
}

TEST_F(DamageCliTest, AForeignDirectoryIsNotARepository) {
  // A directory with files but no config, and one whose config is another tool's (a git directory's).
  fs::create_directories(dir_ / "photos");
  std::ofstream(dir_ / "photos/cat.jpg") << "not a repository";
  auto plain = bv({"list"}, "", {"BLKVAULT_REPO=" + dir_ / "photos"});
  EXPECT_EQ(plain.exit_status, 2) << plain.err;
  EXPECT_EQ(plain.err, "blkvault: " + dir_ / "photos" + " is not a blkvault repository (it has no config file)\n");

  fs::create_directories(dir_ / "git");
  std::ofstream(dir_ / "git/config") << "[core]\n\trepositoryformatversion = 0\n\tbare = true\n";
  for (const auto& cmd : {"list", "verify", "gc"}) {
    auto git = bv({cmd}, "", {"BLKVAULT_REPO=" + dir_ / "git"});
    EXPECT_EQ(git.exit_status, 2) << cmd << ": " << git.err;
    EXPECT_EQ(git.err, "blkvault: " + dir_ / "git" + " is not a blkvault repository (its config file is not ours)\n")
        << cmd;
  }
  EXPECT_EQ(fs::directory_iterator(dir_ / "git")->path().filename(), "config") << "nothing was written there";

  std::ofstream(dir_ / "a-file") << "x";
  auto file = bv({"list"}, "", {"BLKVAULT_REPO=" + dir_ / "a-file"});
  EXPECT_EQ(file.exit_status, 2) << file.err;
  EXPECT_EQ(file.err, "blkvault: " + dir_ / "a-file" + " is not a blkvault repository (not a directory)\n");
}

TEST_F(DamageCliTest, AConfigOfANewerFormatSaysToUpgrade) {
  two_generations();
  std::string text = read_whole(repo_ + "/config");
  const auto at = text.find("\"blkvault_repository\": 1");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 24, "\"blkvault_repository\": 2");
  fs::permissions(repo_ + "/config", fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(repo_ + "/config", std::ios::trunc) << text;
  for (const auto& cmd : {"list", "verify"}) {
    auto r = bv({cmd});
    EXPECT_EQ(r.exit_status, 2) << cmd << ": " << r.err;
    EXPECT_EQ(r.err, "blkvault: repository " + repo_ + " has format version 2; this blkvault reads up to 1 (upgrade blkvault)\n")
        << cmd;
  }
}

TEST_F(DamageCliTest, ADamagedConfigIsExitThreeNamingTheFile) {
  two_generations();
  std::string text = read_whole(repo_ + "/config");
  text[text.size() / 2] = '\x01';
  fs::permissions(repo_ + "/config", fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(repo_ + "/config", std::ios::trunc) << text;
  auto r = bv({"list"});
  EXPECT_EQ(r.exit_status, 3) << r.err;
  EXPECT_EQ(r.err.rfind("blkvault: repository config " + repo_ + "/config is damaged: ", 0), 0u) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
}

}  // namespace
}  // namespace blkvault::test
