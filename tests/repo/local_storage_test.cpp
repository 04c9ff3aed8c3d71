#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "fault_env.h"
#include "temp_dir.h"

#include <filesystem>
#include <string>

#include "repo/storage.h"

namespace blkvault::repo {
namespace {
namespace fs = std::filesystem;

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
std::string text(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

class LocalStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = LocalStorage::open(root_);
    ASSERT_TRUE(s) << s.error().message();
    storage_ = std::move(*s);
  }
  test::TempDir tmp_;
  std::string root_ = tmp_.path();
  std::unique_ptr<LocalStorage> storage_;
};

// A published file survives a power cut with the directories created on its
// way (each synced in its parent first); a writer never committed leaves nothing.
TEST_F(LocalStorageTest, APublishedFileAndEveryDirectoryOnItsWaySurviveAPowerCut) {
  test::FaultEnv env;
  auto s = LocalStorage::open(root_, &env);
  ASSERT_TRUE(s);
  ASSERT_TRUE((*s)->put("packs/ab/abcdef", bytes("pack")));
  ASSERT_TRUE((*s)->put("manifests/1", bytes("manifest")));
  auto w = (*s)->create("packs/cd/unfinished");
  ASSERT_TRUE(w);
  ASSERT_TRUE((*w)->append(bytes("half")));
  const auto trace = env.trace();
  w->reset();
  s->reset();
  // The first put: mkdir packs, fsync root, mkdir packs/ab, fsync packs, then the file.
  ASSERT_GE(trace.size(), 4u);
  EXPECT_EQ(trace[0].kind + " " + trace[0].path, "mkdir " + root_ + "/packs");
  EXPECT_EQ(trace[1].kind + " " + trace[1].path, "fsync_dir " + root_);
  EXPECT_EQ(trace[2].kind + " " + trace[2].path, "mkdir " + root_ + "/packs/ab");
  EXPECT_EQ(trace[3].kind + " " + trace[3].path, "fsync_dir " + root_ + "/packs");
  env.revert();
  for (const auto& [name, content] : {std::pair{"packs/ab/abcdef", "pack"}, std::pair{"manifests/1", "manifest"}}) {
    auto got = storage_->get(name);
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(text(*got), content);
  }
  EXPECT_TRUE(storage_->list_unpublished("")->empty());
}

TEST_F(LocalStorageTest, PutGetAndRangesRoundTripWithOwnerOnlyModes) {
  ASSERT_TRUE(storage_->put("packs/ab/abcdef", bytes("hello world")));
  EXPECT_EQ(text(*storage_->get("packs/ab/abcdef")), "hello world");
  EXPECT_EQ(text(*storage_->get_range("packs/ab/abcdef", 6, 5)), "world");
  EXPECT_EQ(*storage_->size("packs/ab/abcdef"), 11u);
  struct stat st {};
  ASSERT_EQ(::stat((root_ + "/packs/ab/abcdef").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((root_ + "/packs/ab").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(LocalStorageTest, NeverOverwritesAnExistingFile) {
  ASSERT_TRUE(storage_->put("config", bytes("one")));
  auto st = storage_->put("config", bytes("two"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), root_ + "/config already exists");
  EXPECT_EQ(text(*storage_->get("config")), "one");
  EXPECT_TRUE(storage_->list("")->size() == 1u) << "no temporary left behind";
}

TEST_F(LocalStorageTest, UncommittedWriterLeavesNothing) {
  {
    auto w = storage_->create("packs/00/0001");
    ASSERT_TRUE(w);
    ASSERT_TRUE((*w)->append(bytes("partial")));
  }
  EXPECT_FALSE(*storage_->exists("packs/00/0001"));
  EXPECT_TRUE(storage_->list("")->empty());
  int files = 0;
  for (auto& e : fs::recursive_directory_iterator(root_)) files += e.is_regular_file();
  EXPECT_EQ(files, 0);
}

TEST_F(LocalStorageTest, ListIsSortedAndFilteredByPrefix) {
  ASSERT_TRUE(storage_->put("manifests/2", bytes("b")));
  ASSERT_TRUE(storage_->put("manifests/1", bytes("a")));
  ASSERT_TRUE(storage_->put("packs/aa/1", bytes("c")));
  EXPECT_EQ(*storage_->list("manifests/"), (std::vector<std::string>{"manifests/1", "manifests/2"}));
  EXPECT_EQ(storage_->list("")->size(), 3u);
}

TEST_F(LocalStorageTest, MissingFileIsNotFoundAndRemoveIsIdempotent) {
  auto r = storage_->get("nope");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(storage_->remove("nope"));
  EXPECT_TRUE(storage_->remove("no/such/dir"));
  ASSERT_TRUE(storage_->put("x", bytes("1")));
  ASSERT_TRUE(storage_->remove("x"));
  EXPECT_FALSE(*storage_->exists("x"));
}

TEST_F(LocalStorageTest, RefusesNamesThatClimbOutOrFollowSymlinks) {
  for (const char* bad : {"", "/etc/passwd", "../x", "a/../b", "a//b", "a/", "a b", "a/./b"}) {
    auto st = storage_->put(bad, bytes("x"));
    ASSERT_FALSE(st) << bad;
    EXPECT_EQ(st.error().code(), ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(check_name("../x").error().message(), "invalid repository file name '../x': '.' or '..' segment");
  fs::create_directory(root_ + "/elsewhere");
  fs::create_directory_symlink(root_ + "/elsewhere", root_ + "/packs");
  auto st = storage_->put("packs/file", bytes("x"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), root_ + "/packs is not a directory (a symbolic link?); refusing to follow it");
  EXPECT_TRUE(fs::is_empty(root_ + "/elsewhere"));
  fs::create_symlink("/etc/hostname", root_ + "/link");
  EXPECT_FALSE(storage_->get("link"));
}

TEST_F(LocalStorageTest, ListingWhileAnotherWriterPublishesAndRemovesNeverFails) {
  // A reader lists manifests while a writer publishes (temp file, link,
  // unlink) and gc removes: entries that vanish mid-walk are skipped.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 400; ++i) {
      const std::string name = "manifests/" + std::to_string(100000 + i);
      ASSERT_TRUE(storage_->put(name, bytes("x")));
      if (i % 2 == 0) {
        ASSERT_TRUE(storage_->remove(name));
      }
    }
    stop = true;
  });
  int lists = 0;
  while (!stop.load()) {
    auto names = storage_->list("manifests/");
    ASSERT_TRUE(names) << names.error().message();
    for (const auto& n : *names) ASSERT_EQ(n.find(".tmp-"), std::string::npos) << n;
    ++lists;
  }
  writer.join();
  EXPECT_GT(lists, 0);
  EXPECT_EQ(storage_->list("manifests/")->size(), 200u);
}

TEST(LocalStorageRootTest, ATrailingSlashInTheRootDoesNotChangeNames) {
  test::TempDir dir;
  auto s = LocalStorage::open(dir.path() + "/");
  ASSERT_TRUE(s);
  ASSERT_TRUE((*s)->put("packs/aa/x", std::vector<uint8_t>{1}));
  auto names = (*s)->list("packs/");
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, std::vector<std::string>{"packs/aa/x"});
}

}  // namespace
}  // namespace blkvault::repo
