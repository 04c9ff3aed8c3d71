// `blkvault mount` through the real executable (libfuse3): every image of a
// mounted generation is byte-identical to `restore`, a folder per generation
// without --generation, concurrent readers, EIO (logged with the range) for a
// damaged chunk, the clear errors, and unmount on SIGINT. Skips, saying why,
// where /dev/fuse cannot be used.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "app/backup_support.h"
#include "app/subprocess.h"

namespace blkvault::test {
namespace {

constexpr uint64_t kDeviceSize = 4 << 20;

bool is_mounted(const std::string& mp) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, where;
  std::string line;
  const auto canon = std::filesystem::weakly_canonical(mp).string();
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    ss >> dev >> where;
    if (where == canon) return true;
  }
  return false;
}

// A `blkvault mount` running in the background; SIGINT and a wait at the end.
class MountProcess {
 public:
  MountProcess(const std::vector<std::string>& env, const std::vector<std::string>& args, const std::string& err_path)
      : err_path_(err_path) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(err, 2);
      ::dup2(err, 1);
      int in = ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
      std::vector<char*> argv;
      std::string bin = BLKVAULT_BINARY;
      argv.push_back(bin.data());
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(bin.c_str(), argv.data());
      _exit(127);
    }
  }
  ~MountProcess() {
    if (pid_ > 0 && !done_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // Waits until `path` exists (the mount is up), or the process died.
  bool wait_for(const std::string& path) {
    for (int i = 0; i < 300; ++i) {
      if (std::filesystem::exists(path)) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        done_ = true;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // SIGINT, then its exit status (-1 if it did not end within 10 s).
  int interrupt() {
    ::kill(pid_, SIGINT);
    for (int i = 0; i < 200; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        done_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  std::string log() const { return read_whole(err_path_); }

 private:
  pid_t pid_ = -1;
  bool done_ = false;
  std::string err_path_;
};

class MountCliTest : public BackupCliTest {
 protected:
  void SetUp() override {
    int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) GTEST_SKIP() << "/dev/fuse cannot be opened (" << std::strerror(errno) << "): no FUSE here";
    ::close(fd);
  }
  std::vector<std::string> env() const {
    return {"BLKVAULT_REPO=" + repo_, "BLKVAULT_MODULE=" + sim_, "BLKVAULT_PASSWORD=" + std::string(kPassphrase),
            "BLKVAULT_CACHE_DIR=" + std::string(dir_ / "cache")};
  }
  // Mounts, or skips the test when this machine refuses FUSE mounts.
  std::unique_ptr<MountProcess> mount(const std::vector<std::string>& args, const std::string& expect_path) {
    std::vector<std::string> full = {"mount"};
    full.insert(full.end(), args.begin(), args.end());
    auto p = std::make_unique<MountProcess>(env(), full, dir_ / ("mount-" + std::to_string(n_++) + ".log"));
    if (!p->wait_for(expect_path)) {
      const std::string log = p->log();
      if (log.find("fuse: ") != std::string::npos || log.find("Operation not permitted") != std::string::npos) {
        skip_reason_ = "FUSE mounts are refused here: " + log;
      } else {
        ADD_FAILURE() << "the mount did not come up: " << log;
      }
      return nullptr;
    }
    return p;
  }
  std::string skip_reason_;
  int n_ = 0;
};

TEST_F(MountCliTest, EveryImageIsByteIdenticalToRestoreAndSigintUnmounts) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 1);
  const std::string b = make_device("b.img", kDeviceSize - 4096, 2);
  backup_ok({a, b});
  sim_write(a, 3 * kChunk, std::string(5000, 'x'));
  backup_ok({a, b});
  const std::string mp = dir_ / "mnt";
  std::filesystem::create_directory(mp);
  const std::string fa = mp + "/" + a.substr(1);  // "/tmp/x/a.img" -> "tmp_x_a.img"
  std::string name_a = a.substr(1), name_b = b.substr(1);
  std::replace(name_a.begin(), name_a.end(), '/', '_');
  std::replace(name_b.begin(), name_b.end(), '/', '_');

  auto m = mount({"--generation", "1", mp}, mp + "/" + name_a);
  if (!m && !skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  ASSERT_TRUE(m);
  EXPECT_TRUE(is_mounted(mp));
  EXPECT_TRUE(read_whole(mp + "/" + name_a) == restore_bytes("1", a));
  EXPECT_TRUE(read_whole(mp + "/" + name_b) == restore_bytes("1", b));
  EXPECT_EQ(std::filesystem::file_size(mp + "/" + name_b), kDeviceSize - 4096);
  // Concurrent readers of random ranges.
  const std::string expect = restore_bytes("1", a);
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      int fd = ::open((mp + "/" + name_a).c_str(), O_RDONLY);
      std::vector<char> buf(200000);
      for (int i = 0; i < 50; ++i) {
        const uint64_t len = 1 + rng() % buf.size();
        const uint64_t off = rng() % (kDeviceSize - len);
        if (::pread(fd, buf.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len) ||
            std::memcmp(buf.data(), expect.data() + off, len) != 0) {
          ++bad;
        }
      }
      ::close(fd);
    });
  }
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0);
  // Writes are refused.
  EXPECT_LT(::open((mp + "/" + name_a).c_str(), O_WRONLY), 0);
  // A second mount on the same place: busy.
  auto busy = bv({"mount", "--generation", "1", mp});
  EXPECT_EQ(busy.exit_status, 1);
  EXPECT_EQ(busy.err, "blkvault: mountpoint " + mp + " is busy: something is already mounted there (fusermount3 -u " +
                          mp + " or umount it first)\n");
  EXPECT_EQ(m->interrupt(), 0) << m->log();
  EXPECT_FALSE(is_mounted(mp));
}

TEST_F(MountCliTest, WithoutAGenerationEachGenerationIsAFolder) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 3);
  backup_ok({a});
  sim_write(a, 0, std::string(100, 'y'));
  backup_ok({a});
  const std::string mp = dir_ / "mnt";
  std::filesystem::create_directory(mp);
  std::string name = a.substr(1);
  std::replace(name.begin(), name.end(), '/', '_');
  auto m = mount({"--cache-size", "1M", mp}, mp + "/2/" + name);  // 8 chunks of 128 KiB
  if (!m && !skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  ASSERT_TRUE(m);
  EXPECT_TRUE(read_whole(mp + "/1/" + name) == restore_bytes("1", a));
  EXPECT_TRUE(read_whole(mp + "/2/" + name) == restore_bytes("2", a));
  std::vector<std::string> dirs;
  for (const auto& e : std::filesystem::directory_iterator(mp)) dirs.push_back(e.path().filename());
  std::sort(dirs.begin(), dirs.end());
  EXPECT_EQ(dirs, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(m->interrupt(), 0) << m->log();
}

TEST_F(MountCliTest, ADamagedChunkIsEioAndLoggedWithItsRange) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 4);
  backup_ok({a});
  // Flip a byte in the middle of every pack: some chunk of the image is damaged.
  for (const auto& e : std::filesystem::recursive_directory_iterator(repo_ + "/packs")) {
    if (!e.is_regular_file()) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(e.file_size() / 3));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(e.file_size() / 3));
    c = static_cast<char>(c ^ 0x55);
    f.write(&c, 1);
  }
  const std::string mp = dir_ / "mnt";
  std::filesystem::create_directory(mp);
  std::string name = a.substr(1);
  std::replace(name.begin(), name.end(), '/', '_');
  auto m = mount({"--generation", "latest", mp}, mp + "/" + name);
  if (!m && !skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  ASSERT_TRUE(m);
  const std::string good = read_whole(a);
  int fd = ::open((mp + "/" + name).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::vector<char> buf(kChunk);
  int eio = 0;
  for (uint64_t off = 0; off < kDeviceSize; off += kChunk) {
    ssize_t n = ::pread(fd, buf.data(), kChunk, static_cast<off_t>(off));
    if (n < 0) {
      EXPECT_EQ(errno, EIO);
      ++eio;
      continue;
    }
    ASSERT_EQ(n, static_cast<ssize_t>(kChunk));
    EXPECT_EQ(std::memcmp(buf.data(), good.data() + off, kChunk), 0) << "wrong bytes at " << off;  // never
  }
  ::close(fd);
  EXPECT_GE(eio, 1);
  EXPECT_EQ(m->interrupt(), 0);
  const std::string log = m->log();
  EXPECT_NE(log.find("mount: EIO: generation 1 " + a + " bytes "), std::string::npos) << log;
}

std::string e2fs_tool(const std::string& name) {
  for (const std::string dir : {"/usr/sbin/", "/sbin/"}) {
    if (app::program_available(dir + name)) return dir + name;
  }
  return app::program_available(name) ? name : "";
}

// An ext4 filesystem served from the repository: e2fsck -fn finds it clean and
// its files read back identical (debugfs reads the image file itself, as a
// loop device would).
TEST_F(MountCliTest, AnExt4ImageServedFromTheRepositoryIsCleanAndItsFilesMatch) {
  const std::string mkfs = e2fs_tool("mkfs.ext4"), fsck = e2fs_tool("e2fsck"), debugfs = e2fs_tool("debugfs");
  if (mkfs.empty() || fsck.empty() || debugfs.empty()) GTEST_SKIP() << "e2fsprogs is not installed";
  init_repo();
  std::mt19937_64 rng(11);
  const std::string staging = dir_ / "files";
  std::filesystem::create_directories(staging + "/data");
  for (int i = 0; i < 8; ++i) {
    std::ofstream(staging + "/data/file-" + std::to_string(i), std::ios::binary)
        << random_bytes(rng, 50000 + rng() % 300000);
  }
  const std::string image = dir_ / "fs.img";
  { std::ofstream(image).close(); }
  std::filesystem::resize_file(image, 32 << 20);
  auto quiet = [](const std::vector<std::string>& argv) {
    auto r = app::run_process(argv, /*capture_stdout=*/false, /*quiet_stdout=*/true);
    return r ? r->exit_status : -1;
  };
  ASSERT_EQ(quiet({mkfs, "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", staging, image}), 0);
  backup_ok({image});
  const std::string mp = dir_ / "mnt";
  std::filesystem::create_directory(mp);
  std::string name = image.substr(1);
  std::replace(name.begin(), name.end(), '/', '_');
  auto m = mount({"--generation", "1", mp}, mp + "/" + name);
  if (!m && !skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  ASSERT_TRUE(m);
  EXPECT_EQ(quiet({fsck, "-fn", mp + "/" + name}), 0) << "e2fsck -fn of the mounted image";
  for (int i = 0; i < 8; ++i) {
    const std::string out = dir_ / ("out-" + std::to_string(i));
    ASSERT_EQ(quiet({debugfs, "-R", "dump /data/file-" + std::to_string(i) + " " + out, mp + "/" + name}), 0);
    EXPECT_TRUE(read_whole(out) == read_whole(staging + "/data/file-" + std::to_string(i))) << "file-" << i;
  }
  EXPECT_EQ(m->interrupt(), 0) << m->log();
}

TEST_F(MountCliTest, ErrorsAreOneLine) {
  init_repo();
  const std::string a = make_device("a.img", kDeviceSize, 5);
  backup_ok({a});
  const std::string mp = dir_ / "mnt";
  auto r = bv({"mount", mp});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: mountpoint " + mp + " does not exist\n");
  std::filesystem::create_directory(mp);
  r = bv({"mount", "--generation", "9", mp});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: generation 9 does not exist (the repository has: 1)\n");
  r = bv({"mount", "--cache-size", "lots", mp});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "blkvault: --cache-size: invalid size 'lots': expected a number with an optional unit K, M, G, T "
                   "(powers of 1024)\n");
}

}  // namespace
}  // namespace blkvault::test
