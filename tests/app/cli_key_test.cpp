// Encryption from the command line: init's default, passphrase sources, wrong
// passphrase (exit 6), key add/remove/passwd/export/import, keyfile mode.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "app/backup_support.h"

namespace blkvault::test {
namespace {
namespace fs = std::filesystem;

class KeyCliTest : public BackupCliTest {
 protected:
  // Runs with `pass` as BLKVAULT_PASSWORD instead of the fixture's.
  CliRun as(const std::string& pass, const std::vector<std::string>& args, const std::vector<std::string>& env = {},
            const std::string& stdin_path = "") {
    std::vector<std::string> e = {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=" + sim_, "BLKVAULT_PASSWORD=" + pass,
                                  "BLKVAULT_CACHE_DIR=" + dir_ / "cache"};
    e.insert(e.end(), env.begin(), env.end());
    return run_blkvault(args, e, stdin_path);
  }
  std::vector<std::string> fast_kdf() const { return {"--kdf-ops", "1", "--kdf-mem", "64K"}; }
};

TEST_F(KeyCliTest, RepositoriesAreEncryptedByDefaultAndAWrongPassphraseIsExitSix) {
  init_repo();
  auto a = make_device("a.img", 4 * kChunk, 1);
  backup_ok({a});
  auto list = bv({"--json", "status"});
  ASSERT_EQ(list.exit_status, 0) << list.err;
  std::ifstream cfg(repo_ + "/config");
  const std::string config((std::istreambuf_iterator<char>(cfg)), {});
  EXPECT_NE(config.find("\"cipher\": \"xchacha20-poly1305\"") == std::string::npos &&
                config.find("\"cipher\": \"aes-256-gcm\"") == std::string::npos,
            true)
      << config;
  auto wrong = as("not it", {"list"});
  EXPECT_EQ(wrong.exit_status, 6);
  EXPECT_EQ(wrong.err, "blkvault: wrong passphrase for repository " + repo_ + "\n");
  auto none = run_blkvault({"list"}, {"BLKVAULT_REPO=" + repo_, "BLKVAULT_CACHE_DIR=" + dir_ / "cache"});
  EXPECT_EQ(none.exit_status, 6);
  EXPECT_EQ(none.err, "blkvault: repository " + repo_ +
                          " is encrypted: give its passphrase with BLKVAULT_PASSWORD, --password-file or "
                          "--password-command (there is no terminal to ask on)\n");
  // --password-file and --password-command work as well.
  const std::string pf = dir_ / "pass.txt";
  std::ofstream(pf) << kPassphrase << "\n";
  auto by_file = run_blkvault({"--password-file", pf, "list"},
                              {"BLKVAULT_REPO=" + repo_, "BLKVAULT_CACHE_DIR=" + dir_ / "cache"});
  EXPECT_EQ(by_file.exit_status, 0) << by_file.err;
  auto by_cmd = run_blkvault({"--password-command", "cat " + pf, "list"},
                             {"BLKVAULT_REPO=" + repo_, "BLKVAULT_CACHE_DIR=" + dir_ / "cache"});
  EXPECT_EQ(by_cmd.exit_status, 0) << by_cmd.err;
}

TEST_F(KeyCliTest, InitWithoutAPassphraseSaysWhatToDo) {
  auto r = run_blkvault({"init"}, {"BLKVAULT_REPO=" + repo_, "BLKVAULT_CACHE_DIR=" + dir_ / "cache"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err,
            "blkvault: init: an encrypted repository needs a passphrase: set BLKVAULT_PASSWORD, or use --password-file "
            "or --password-command (or --encryption none for a repository anyone holding it can read)\n");
  EXPECT_FALSE(fs::exists(repo_ + "/config"));
  auto plain = run_blkvault({"init", "--encryption", "none"}, {"BLKVAULT_REPO=" + repo_});
  ASSERT_EQ(plain.exit_status, 0) << plain.err;
  EXPECT_NE(plain.out.find(", not encrypted"), std::string::npos) << plain.out;
  auto keys = run_blkvault({"key", "list"}, {"BLKVAULT_REPO=" + repo_});
  EXPECT_EQ(keys.exit_status, 2);
  EXPECT_EQ(keys.err, "blkvault: repository " + repo_ + " is not encrypted: it has no keys\n");
}

TEST_F(KeyCliTest, AddRemovePasswdExportImport) {
  init_repo();
  auto a = make_device("a.img", 4 * kChunk, 2);
  backup_ok({a});
  const std::string image = restore_bytes("latest", a);

  auto listed = nlohmann::json::parse(bv({"--json", "key", "list"}).out);
  ASSERT_EQ(listed["keys"].size(), 1u);
  EXPECT_EQ(listed["keys"][0]["current"], true);
  const std::string first = listed["keys"][0]["id"];

  std::vector<std::string> add = {"key", "add"};
  for (const auto& f : fast_kdf()) add.push_back(f);
  auto added = bv(add, "", {"BLKVAULT_NEW_PASSWORD=second one"});
  ASSERT_EQ(added.exit_status, 0) << added.err;
  EXPECT_EQ(added.out.rfind("added key ", 0), 0u) << added.out;
  EXPECT_EQ(as("second one", {"-q", "list"}).exit_status, 0);

  auto self = bv({"key", "remove", first});
  EXPECT_EQ(self.exit_status, 2);
  EXPECT_EQ(self.err, "blkvault: key " + first + " is the one this session opened the repository with; use another to remove it\n");
  auto removed = as("second one", {"key", "remove", first});
  ASSERT_EQ(removed.exit_status, 0) << removed.err;
  EXPECT_EQ(as(kPassphrase, {"list"}).exit_status, 6) << "the removed passphrase no longer opens it";

  std::vector<std::string> passwd = {"key", "passwd"};
  for (const auto& f : fast_kdf()) passwd.push_back(f);
  auto changed = as("second one", passwd, {"BLKVAULT_NEW_PASSWORD=third"});
  ASSERT_EQ(changed.exit_status, 0) << changed.err;
  EXPECT_EQ(as("second one", {"list"}).exit_status, 6);
  EXPECT_EQ(as("third", {"-q", "list"}).exit_status, 0);

  // The paper backup brings access back after every key is lost.
  auto paper = as("third", {"key", "export"});
  ASSERT_EQ(paper.exit_status, 0) << paper.err;
  EXPECT_EQ(paper.out.rfind("blkvault master key of repository ", 0), 0u) << paper.out;
  const std::string paper_file = dir_ / "paper.txt";
  std::ofstream(paper_file) << paper.out;
  fs::remove_all(repo_ + "/keys");
  auto lost = as("third", {"list"});
  EXPECT_EQ(lost.exit_status, 6);
  EXPECT_EQ(lost.err, "blkvault: repository " + repo_ + " has no key left in keys/ (restore access with blkvault key import)\n");
  std::vector<std::string> import = {"key", "import"};
  for (const auto& f : fast_kdf()) import.push_back(f);
  auto imported = as("", import, {"BLKVAULT_NEW_PASSWORD=fourth"}, paper_file);
  ASSERT_EQ(imported.exit_status, 0) << imported.err;
  auto restored = as("fourth", {"-q", "restore", "--generation", "latest", "--device", a, "--to", dir_ / "back.img"});
  ASSERT_EQ(restored.exit_status, 0) << restored.err;
  EXPECT_EQ(read_whole(dir_ / "back.img"), image);
}

TEST_F(KeyCliTest, KeyfileModeNeedsTheKeyFile) {
  const std::string key = dir_ / "repo.key";
  std::vector<std::string> init = {"init", "--key-mode", "keyfile"};
  for (const auto& f : fast_kdf()) init.push_back(f);
  auto missing = bv(init);
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_EQ(missing.err, "blkvault: --key-mode keyfile needs --key-file PATH (where to write the key)\n");
  std::vector<std::string> with = {"--key-file", key};
  with.insert(with.end(), init.begin(), init.end());
  auto made = bv(with);
  ASSERT_EQ(made.exit_status, 0) << made.err;
  EXPECT_TRUE(fs::exists(key));
  EXPECT_FALSE(fs::exists(repo_ + "/keys"));
  EXPECT_EQ(fs::status(key).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  auto without = bv({"list"});
  EXPECT_EQ(without.exit_status, 6);
  EXPECT_EQ(without.err, "blkvault: repository " + repo_ +
                             " keeps its key in a key file outside it: give it with --key-file (or BLKVAULT_KEY_FILE)\n");
  auto ok = bv({"list"}, "", {"BLKVAULT_KEY_FILE=" + key});
  EXPECT_EQ(ok.exit_status, 0) << ok.err;
}

}  // namespace
}  // namespace blkvault::test
