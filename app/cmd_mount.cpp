// `blkvault mount [--generation ID|latest] MOUNTPOINT`: a read-only FUSE
// filesystem (libfuse3) serving the device images of a generation — one file
// per device — or, without --generation, a folder per committed generation.
// Reads go through MountReader (app/mount_reader.h): a bounded chunk cache
// (--cache-size, 64 MiB by default), read-ahead for sequential readers,
// EIO (logged with the range) for a damaged chunk. It runs in the foreground
// until `fusermount3 -u MOUNTPOINT` (or `umount`) or SIGINT/SIGTERM/SIGHUP,
// which unmount.
#define FUSE_USE_VERSION 31
#include <fuse3/fuse.h>

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "app/mount_reader.h"
#include "app/output.h"
#include "app/recovery_commands.h"
#include "app/repo_access.h"
#include "app/restore_lookup.h"
#include "app/restore_target.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

// "/dev/sda" -> "dev_sda.img": one path component, recognisable.
std::string image_file_name(const std::string& device) {
  std::string s = device;
  while (!s.empty() && s.front() == '/') s.erase(0, 1);
  for (char& c : s) {
    if (c == '/') c = '_';
  }
  if (s.empty()) s = "device";
  if (s.size() < 4 || s.compare(s.size() - 4, 4, ".img") != 0) s += ".img";
  return s;
}

// What the filesystem shows. Built before mounting; images are loaded on first use.
struct Tree {
  repo::Repository* repo = nullptr;
  MountReader* reader = nullptr;
  Output* out = nullptr;
  bool per_generation = false;  // a folder per generation at the root
  struct File {
    repo::GenerationId generation;
    std::string device;
    uint64_t size_bytes;
    std::unique_ptr<repo::DeviceImage> image;  // loaded on open
  };
  // "" (the root, single generation) or "<id>" -> file name -> file
  std::map<std::string, std::map<std::string, File>> dirs;
  std::mutex mu;  // guards loading images

  struct Found {
    bool dir = false;
    File* file = nullptr;
  };
  std::optional<Found> find(const char* path) {
    std::string p = path;
    if (p == "/") return Found{true, nullptr};
    p.erase(0, 1);
    std::string dir, name = p;
    if (per_generation) {
      auto slash = p.find('/');
      dir = p.substr(0, slash);
      if (dirs.count(dir) == 0) return std::nullopt;
      if (slash == std::string::npos) return Found{true, nullptr};
      name = p.substr(slash + 1);
    }
    auto d = dirs.find(dir);
    if (d == dirs.end()) return std::nullopt;
    auto f = d->second.find(name);
    if (f == d->second.end()) return std::nullopt;
    return Found{false, &f->second};
  }
};

Tree* tree() { return static_cast<Tree*>(fuse_get_context()->private_data); }

int fs_getattr(const char* path, struct stat* st, fuse_file_info*) {
  auto f = tree()->find(path);
  if (!f) return -ENOENT;
  std::memset(st, 0, sizeof *st);
  st->st_uid = ::getuid();
  st->st_gid = ::getgid();
  if (f->dir) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = static_cast<off_t>(f->file->size_bytes);
    st->st_blocks = static_cast<blkcnt_t>((f->file->size_bytes + 511) / 512);
  }
  return 0;
}

int fs_readdir(const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info*, fuse_readdir_flags) {
  Tree* t = tree();
  auto f = t->find(path);
  if (!f) return -ENOENT;
  if (!f->dir) return -ENOTDIR;
  fill(buf, ".", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  fill(buf, "..", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  std::string p = path;
  if (t->per_generation && p == "/") {
    for (const auto& [dir, files] : t->dirs) fill(buf, dir.c_str(), nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
    return 0;
  }
  const std::string dir = t->per_generation ? p.substr(1) : "";
  for (const auto& [name, file] : t->dirs[dir]) fill(buf, name.c_str(), nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  return 0;
}

int fs_open(const char* path, fuse_file_info* fi) {
  Tree* t = tree();
  auto f = t->find(path);
  if (!f) return -ENOENT;
  if (f->dir) return -EISDIR;
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
  std::lock_guard g(t->mu);
  if (!f->file->image) {
    auto img = t->repo->device_image(f->file->generation, f->file->device);
    if (!img) {
      t->out->log(LogLevel::kError, fmt::format("mount: opening {}: {}", path, img.error().message()));
      return -EIO;
    }
    f->file->image = std::make_unique<repo::DeviceImage>(std::move(*img));
  }
  fi->fh = reinterpret_cast<uint64_t>(f->file->image.get());
  fi->keep_cache = 1;  // the image never changes: the page cache may keep it
  return 0;
}

int fs_read(const char*, char* buf, size_t size, off_t offset, fuse_file_info* fi) {
  Tree* t = tree();
  const auto* image = reinterpret_cast<const repo::DeviceImage*>(fi->fh);
  auto n = t->reader->read(*image, static_cast<uint64_t>(offset),
                           std::span(reinterpret_cast<uint8_t*>(buf), size));
  if (!n) {
    // Never wrong bytes: the reader gets EIO, the log says which range and why.
    t->out->log(LogLevel::kError, fmt::format("mount: EIO: {}", n.error().message()));
    return -EIO;
  }
  return static_cast<int>(*n);
}

void* fs_init(fuse_conn_info*, fuse_config* cfg) {
  cfg->kernel_cache = 1;
  cfg->attr_timeout = 3600;
  cfg->entry_timeout = 3600;
  return fuse_get_context()->private_data;
}

Status check_mountpoint(const std::string& mp) {
  struct stat st {};
  if (::stat(mp.c_str(), &st) != 0) {
    if (errno == ENOENT) return fail(ErrorCode::kNotFound, fmt::format("mountpoint {} does not exist", mp));
    return fail_errno(fmt::format("mountpoint {}", mp));
  }
  if (!S_ISDIR(st.st_mode)) return fail(ErrorCode::kInvalidArgument, fmt::format("mountpoint {} is not a directory", mp));
  std::error_code ec;
  const auto canon = std::filesystem::canonical(mp, ec).string();
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string id, parent, majmin, root, mnt;
    ss >> id >> parent >> majmin >> root >> mnt;
    if (mnt == canon) {
      return fail(ErrorCode::kBusy, fmt::format("mountpoint {} is busy: something is already mounted there "
                                                "(fusermount3 -u {} or umount it first)", mp, mp));
    }
  }
  return {};
}

Status check_fuse() {
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return fail(ErrorCode::kModule, fmt::format("no FUSE on this machine: /dev/fuse: {} (load it with 'modprobe fuse'; "
                                                "install the fuse3 package)", std::strerror(errno)));
  }
  ::close(fd);
  return {};
}

}  // namespace

Status cmd_mount(Context& ctx, const MountOptions& opts) {
  uint64_t cache_bytes = MountReader::kDefaultCacheBytes;
  if (!opts.cache_size.empty()) {
    auto parsed = parse_size(opts.cache_size);
    if (!parsed) return fail(std::move(parsed).error().wrap("--cache-size"));
    cache_bytes = *parsed;
  }
  BLKVAULT_TRY(check_fuse());
  BLKVAULT_TRY(check_mountpoint(opts.mountpoint));
  BLKVAULT_TRY_ASSIGN(auto repository, open_repository(ctx, /*write=*/false));
  Tree t;
  t.repo = repository.get();
  t.out = &ctx.out;
  std::vector<repo::GenerationInfo> gens;
  if (!opts.generation.empty()) {
    BLKVAULT_TRY_ASSIGN(repo::GenerationId id, resolve_committed(*repository, opts.generation));
    BLKVAULT_TRY_ASSIGN(auto g, repository->generation(id));
    gens.push_back(std::move(g));
  } else {
    t.per_generation = true;
    BLKVAULT_TRY_ASSIGN(auto all, repository->generations());
    for (auto& g : all) {
      if (g.state == repo::GenerationState::kComplete || g.state == repo::GenerationState::kPartial) {
        gens.push_back(std::move(g));
      }
    }
    if (gens.empty()) return fail(ErrorCode::kNotFound, "the repository has no backup yet");
  }
  std::vector<std::string> shown;
  for (const auto& g : gens) {
    auto& dir = t.dirs[t.per_generation ? std::to_string(g.id) : ""];
    for (const auto& d : g.devices) {
      if (!d.complete) continue;
      std::string name = image_file_name(d.name);
      while (dir.count(name) != 0) name = "_" + name;  // two names that flatten alike
      dir.emplace(name, Tree::File{g.id, d.name, d.size_bytes, nullptr});
      if (!t.per_generation) shown.push_back(name);
    }
  }
  // Chunk buffers (up to 16 MiB, freed in any of FUSE's threads) from mmap,
  // so a freed one goes back to the system: with glibc's adaptive threshold
  // they came from per-thread arenas after the first free and stayed there,
  // fragmented (a 512 MiB image read through a 64 MiB cache: 248 MiB peak RSS
  // with it, 83 MiB with this). Setting the threshold turns adaptation off.
  ::mallopt(M_MMAP_THRESHOLD, 128 << 10);
  MountReader reader(*repository, cache_bytes);
  t.reader = &reader;

  fuse_operations ops{};
  ops.getattr = fs_getattr;
  ops.readdir = fs_readdir;
  ops.open = fs_open;
  ops.read = fs_read;
  ops.init = fs_init;
  std::vector<std::string> argv_s = {"blkvault", "-o", "ro,default_permissions,fsname=blkvault,subtype=blkvault"};
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse* f = fuse_new(&args, &ops, sizeof ops, &t);
  fuse_opt_free_args(&args);  // fuse_new may have copied them into its own allocation
  if (f == nullptr) return fail(ErrorCode::kIo, "mount: the FUSE library refused its arguments");
  // SIGINT/SIGTERM/SIGHUP end the loop and unmount. libfuse installs its
  // handlers only over the default ones, so the app's (which only set the
  // cancel token) give way first; before mounting, so no signal can leave a
  // dead mount behind.
  fuse_session* se = fuse_get_session(f);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_destroy(f);
    return fail(ErrorCode::kInternal, "mount: cannot install the signal handlers");
  }
  if (fuse_mount(f, opts.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_destroy(f);
    return fail(ErrorCode::kIo, fmt::format("mounting on {} failed (FUSE; see the message above)", opts.mountpoint));
  }
  const std::string what = t.per_generation
                               ? fmt::format("{} generations, one folder each", gens.size())
                               : fmt::format("generation {}: {}", gens.front().id, fmt::join(shown, ", "));
  const std::string example = t.per_generation ? fmt::format("{}/{}/<image>", opts.mountpoint, gens.back().id)
                                               : fmt::format("{}/{}", opts.mountpoint, shown.empty() ? "<image>" : shown.front());
  ctx.out.note(fmt::format("mounted {} at {} (read-only)\n"
                           "  files: losetup --find --show --read-only {}  then  mount -o ro,noload /dev/loopN /mnt/x\n"
                           "  stop with Ctrl-C or: fusermount3 -u {}",
                           what, opts.mountpoint, example, opts.mountpoint));
  const int rc = fuse_loop_mt(f, 0);
  fuse_remove_signal_handlers(se);
  fuse_unmount(f);
  fuse_destroy(f);
  if (rc != 0 && rc != SIGINT && rc != SIGTERM && rc != SIGHUP) {
    return fail(ErrorCode::kIo, fmt::format("mount on {} ended with an error ({})", opts.mountpoint, rc));
  }
  ctx.out.result(fmt::format("unmounted {} ({} chunks read from the repository)", opts.mountpoint,
                             reader.chunks_loaded()));
  ctx.out.result_json({{"mountpoint", opts.mountpoint}, {"chunks_read", reader.chunks_loaded()}});
  return {};
}

}  // namespace blkvault::app
