// A repository on a small filesystem (a tmpfs mount: root only; skipped with
// the reason otherwise), everything on it — packs, manifests and the index:
//   * a backup that runs out of space fails with one line and exit status 1,
//     commits nothing (list shows no new generation, verify --data is clean,
//     the earlier generation restores), and once space is freed the next
//     backup works;
//   * gc on a nearly full filesystem deletes what it can, warns about the
//     packs it could not rewrite (exit 0), loses nothing, and finishes the
//     rewrite when rerun with space.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "app/backup_support.h"
#include "repo/repository.h"

namespace blkvault::test {
namespace {

namespace fs = std::filesystem;

class FullDiskTest : public BackupCliTest {
 protected:
  std::string mnt_ = dir_ / "small";
  bool mounted_ = false;

  // Mounts a tmpfs of `size` at mnt_ and puts an unencrypted repository on it
  // (so the index lives there too). Returns why not, or "" on success.
  std::string setup(const std::string& size, uint64_t pack_size) {
    if (::geteuid() != 0) return "mounting a small filesystem needs root";
    fs::create_directories(mnt_);
    const std::string opts = "size=" + size + ",mode=0700";
    if (::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      return std::string("mount -t tmpfs failed: ") + std::strerror(errno);
    }
    mounted_ = true;
    repo_ = mnt_ + "/repo";
    repo::InitOptions o;
    o.chunk_size = kChunk;
    o.pack_size = pack_size;
    auto st = repo::init_repository(repo_, o);
    if (!st) return "init: " + st.error().message();
    return "";
  }
  void resize(const std::string& size) {
    const std::string opts = "size=" + size;
    ASSERT_EQ(::mount("tmpfs", mnt_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()), 0) << std::strerror(errno);
  }
  uint64_t free_bytes() {
    struct statvfs v {};
    ::statvfs(mnt_.c_str(), &v);
    return static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  }
  // Fills the filesystem, then gives back `leave` bytes.
  void fill_leaving(uint64_t leave) {
    const std::string filler = mnt_ + "/filler";
    {
      std::ofstream f(filler, std::ios::binary);
      std::string block(4096, 'x');
      while (f.write(block.data(), static_cast<std::streamsize>(block.size()))) {
      }
    }
    const uint64_t size = fs::file_size(filler);
    fs::resize_file(filler, size > leave ? size - leave : 0);
  }
  std::vector<repo::GenerationInfo> generations() {
    auto r = repo::Repository::open(repo_, {});
    EXPECT_TRUE(r) << r.error().message();
    if (!r) return {};
    auto g = (*r)->generations();
    return g ? *g : std::vector<repo::GenerationInfo>{};
  }
  void TearDown() override {
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }
};

TEST_F(FullDiskTest, ABackupOutOfSpaceFailsInOneLineCommitsNothingAndTheNextOneWorksOnceSpaceIsFreed) {
  if (auto why = setup("4M", 1 << 20); !why.empty()) GTEST_SKIP() << why;
  const std::string a = make_device("a.img", 1 << 20, 1);
  const std::string b = make_device("b.img", 12 << 20, 2);  // ~6 MiB to store: more than is left
  backup_ok({a});

  std::vector<std::string> args = {"--json", "backup"};
  for (const auto& x : diff_storage_args()) args.push_back(x);
  args.push_back(b);
  auto r = bv(args);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("blkvault: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  std::cout << "out of space: " << r.err;

  // No half generation: only generation 1 is committed; verify is clean; it restores.
  for (const auto& g : generations()) {
    if (g.id != 1) {
      EXPECT_TRUE(g.state == repo::GenerationState::kFailed || g.state == repo::GenerationState::kInProgress)
          << "generation " << g.id << " is " << repo::to_string(g.state);
    }
  }
  auto list = bv({"--json", "list"});
  ASSERT_EQ(list.exit_status, 0) << list.err;
  auto lj = nlohmann::json::parse(list.out);
  int committed = 0;
  for (const auto& g : lj["generations"]) committed += g["state"] == "complete" || g["state"] == "partial";
  EXPECT_EQ(committed, 1) << list.out;
  auto verify = bv({"verify", "--data"});
  EXPECT_EQ(verify.exit_status, 0) << verify.out << verify.err;
  EXPECT_TRUE(restore_bytes("1", a) == read_whole(a));
  EXPECT_TRUE(sim_show()["snapshots"].empty()) << "a snapshot was left behind";

  // Space freed: the next backup works and restores byte-identical.
  resize("64M");
  auto next = backup_ok({b});
  EXPECT_EQ(next["generation"].get<uint64_t>(), 3u) << next.dump();
  EXPECT_TRUE(restore_bytes("latest", b) == read_whole(b));
  EXPECT_TRUE(restore_bytes("1", a) == read_whole(a));
  auto gc = bv({"gc"});
  EXPECT_EQ(gc.exit_status, 0) << gc.err;
  EXPECT_EQ(bv({"verify", "--data"}).exit_status, 0);
}

TEST_F(FullDiskTest, GcOnANearlyFullDiskDeletesWhatItCanWarnsAndLosesNothing) {
  if (auto why = setup("16M", 1 << 20); !why.empty()) GTEST_SKIP() << why;
  const uint64_t size = 4 << 20;
  const std::string a = make_device("a.img", size, 3);
  {
    // Incompressible everywhere, so packs fill with 8 chunks each.
    std::mt19937_64 rng(33);
    std::ofstream(a, std::ios::binary) << random_bytes(rng, size);
  }
  backup_ok({a});
  // Keep one chunk of each pack of generation 1 live and overwrite the rest,
  // so after prune every one of its packs is mostly garbage but none is empty.
  std::set<uint64_t> keep;
  {
    auto r = repo::Repository::open(repo_, {});
    ASSERT_TRUE(r) << r.error().message();
    auto img = (*r)->device_image(1, a);
    ASSERT_TRUE(img) << img.error().message();
    std::set<uint32_t> seen;
    for (const auto& c : img->chunks) {
      if (seen.insert(c.pack).second) keep.insert(c.chunk_index);
    }
    ASSERT_GE(seen.size(), 3u);
  }
  std::mt19937_64 rng(44);
  for (uint64_t c = 0; c < size / kChunk; ++c) {
    if (!keep.count(c)) sim_write(a, c * kChunk, random_bytes(rng, kChunk));
  }
  backup_ok({a});
  const std::string expect = read_whole(a);
  auto prune = bv({"prune", "--keep-last", "1"});
  ASSERT_EQ(prune.exit_status, 0) << prune.err;

  fill_leaving(96 << 10);  // room for the index's WAL, not for a new pack
  std::cout << "free before gc: " << free_bytes() << " bytes\n";
  auto gc = bv({"gc"});
  EXPECT_EQ(gc.exit_status, 0) << gc.err;
  EXPECT_NE(gc.out.find("warning: not rewriting pack packs/"), std::string::npos) << gc.out;
  EXPECT_NE(gc.out.find("No space left on device; free some space and run gc again"), std::string::npos) << gc.out;
  std::cout << "gc on a full disk:\n" << gc.out << gc.err;
  EXPECT_EQ(bv({"verify", "--data"}).exit_status, 0);
  EXPECT_TRUE(restore_bytes("latest", a) == expect);

  // With space again a rerun finishes the rewrite.
  fs::remove(mnt_ + "/filler");
  auto again = bv({"--json", "gc"});
  EXPECT_EQ(again.exit_status, 0) << again.err;
  auto j = nlohmann::json::parse(again.out);
  EXPECT_GE(j["packs_rewritten"].get<uint64_t>(), 3u) << again.out;
  EXPECT_TRUE(j["warnings"].empty()) << again.out;
  EXPECT_LT(j["bytes_after"].get<uint64_t>(), j["bytes_before"].get<uint64_t>()) << again.out;
  EXPECT_EQ(bv({"verify", "--data"}).exit_status, 0);
  EXPECT_TRUE(restore_bytes("latest", a) == expect);
}

}  // namespace
}  // namespace blkvault::test
