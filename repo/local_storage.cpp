#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "common/crash_point.h"
#include "common/env.h"
#include "common/file_io.h"
#include "repo/storage.h"

namespace blkvault::repo {
namespace {

std::atomic<unsigned> g_temp_counter{0};

bool valid_segment_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

// Ensures every directory of `path` below root exists as a real directory (0700),
// refusing symlinks on the way. Each directory is made durable in its parent
// (an fsync of the parent) before anything is published inside it, once per
// directory and LocalStorage: a file's own directory fsync does not make the
// directory's name durable, so a power cut could otherwise lose a new
// "packs/3f/" with the packs in it. A directory found existing is synced too:
// whoever created it may have died (or failed) before its parent's fsync.
Status make_parents(Env& env, const std::string& root, std::string_view name, std::mutex& mu,
                    std::set<std::string>& durable_dirs) {
  std::string dir = root;
  size_t pos = 0;
  while (true) {
    size_t slash = name.find('/', pos);
    if (slash == std::string_view::npos) return {};
    const std::string parent = dir;
    dir += "/";
    dir += name.substr(pos, slash - pos);
    pos = slash + 1;
    {
      std::lock_guard guard(mu);
      if (durable_dirs.count(dir) != 0) continue;
    }
    if (auto made = env.mkdir(dir, 0700); !made && made.error().sys_errno() != EEXIST) {
      return fail(std::move(made.error()));
    }
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) return fail_errno(fmt::format("stat of {}", dir));
    if (!S_ISDIR(st.st_mode)) {
      return fail(ErrorCode::kCorrupt, fmt::format("{} is not a directory (a symbolic link?); refusing to follow it", dir));
    }
    BLKVAULT_TRY(env.fsync_dir(parent));
    std::lock_guard guard(mu);
    durable_dirs.insert(dir);
  }
}

class LocalWriter final : public Storage::Writer {
 public:
  LocalWriter(Env& env, std::string final_path, std::string temp_path, UniqueFd fd)
      : env_(env), final_(std::move(final_path)), temp_(std::move(temp_path)), fd_(std::move(fd)) {}
  ~LocalWriter() override {
    if (!committed_) {
      fd_.reset();
      (void)env_.unlink(temp_);
    }
  }
  Status append(std::span<const uint8_t> data) override {
    BLKVAULT_TRY(env_.write(fd_.get(), data, temp_));
    size_ += data.size();
    return {};
  }
  uint64_t size() const override { return size_; }
  Status commit() override {
    if (committed_) return fail(ErrorCode::kInternal, fmt::format("{} committed twice", final_));
    crash_point("before publishing " + final_);
    BLKVAULT_TRY(env_.fsync(fd_.get(), temp_));
    BLKVAULT_TRY(fd_.close(temp_));
    // link(2) publishes without replacing: EEXIST if the name is taken.
    if (auto linked = env_.link(temp_, final_); !linked) {
      if (linked.error().sys_errno() == EEXIST) {
        return fail(ErrorCode::kInvalidArgument, fmt::format("{} already exists", final_), EEXIST);
      }
      return fail(std::move(linked.error()).wrap(fmt::format("publishing {}", final_)));
    }
    committed_ = true;
    crash_point("after linking " + final_);
    (void)env_.unlink(temp_);  // a leftover temp name is only garbage (gc deletes it)
    return env_.fsync_dir(parent_dir(final_));
  }

 private:
  Env& env_;
  std::string final_, temp_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  bool committed_ = false;
};

}  // namespace

Status check_name(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("invalid repository file name '{}': {}", name, why));
  };
  if (name.empty()) return bad("empty");
  if (name.front() == '/' || name.back() == '/') return bad("leading or trailing '/'");
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    std::string_view seg = name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (seg.empty()) return bad("empty path segment");
    if (seg == "." || seg == "..") return bad("'.' or '..' segment");
    if (!std::all_of(seg.begin(), seg.end(), valid_segment_char)) return bad("characters outside [A-Za-z0-9._-]");
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return {};
}

Result<std::unique_ptr<LocalStorage>> LocalStorage::open(const std::string& root, Env* env) {
  struct stat st {};
  if (::lstat(root.c_str(), &st) != 0) return fail_errno(fmt::format("opening repository {}", root));
  if (!S_ISDIR(st.st_mode)) return fail(ErrorCode::kInvalidArgument, fmt::format("{} is not a directory", root));
  std::string clean = root;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  return std::unique_ptr<LocalStorage>(new LocalStorage(clean, env != nullptr ? *env : Env::real()));
}

Result<std::string> LocalStorage::path_for(std::string_view name, bool create_dirs) {
  BLKVAULT_TRY(check_name(name));
  if (create_dirs) BLKVAULT_TRY(make_parents(env_, root_, name, mu_, durable_dirs_));
  return root_ + "/" + std::string(name);
}

Status LocalStorage::put(std::string_view name, std::span<const uint8_t> data) {
  BLKVAULT_TRY_ASSIGN(auto w, create(name));
  BLKVAULT_TRY(w->append(data));
  return w->commit();
}

Result<std::unique_ptr<Storage::Writer>> LocalStorage::create(std::string_view name) {
  BLKVAULT_TRY_ASSIGN(std::string path, path_for(name, true));
  std::string temp = fmt::format("{}.tmp-{}-{}", path, ::getpid(), g_temp_counter++);
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, env_.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600));
  return std::unique_ptr<Writer>(new LocalWriter(env_, path, temp, std::move(fd)));
}

Result<std::vector<uint8_t>> LocalStorage::get(std::string_view name) {
  BLKVAULT_TRY_ASSIGN(uint64_t n, size(name));
  return get_range(name, 0, n);
}

Result<std::vector<uint8_t>> LocalStorage::get_range(std::string_view name, uint64_t offset, uint64_t length) {
  std::vector<uint8_t> out;
  BLKVAULT_TRY(get_range_into(name, offset, length, out));
  return out;
}

Status LocalStorage::get_range_into(std::string_view name, uint64_t offset, uint64_t length,
                                    std::vector<uint8_t>& out) {
  BLKVAULT_TRY_ASSIGN(std::string path, path_for(name, false));
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY | O_NOFOLLOW));
  out.resize(length);
  BLKVAULT_TRY(pread_full(fd.get(), out, offset, path));
  return {};
}

Result<uint64_t> LocalStorage::size(std::string_view name) {
  BLKVAULT_TRY_ASSIGN(std::string path, path_for(name, false));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return fail_errno(fmt::format("stat of {}", path));
  if (!S_ISREG(st.st_mode)) return fail(ErrorCode::kCorrupt, fmt::format("{} is not a regular file", path));
  return static_cast<uint64_t>(st.st_size);
}

Result<bool> LocalStorage::exists(std::string_view name) {
  BLKVAULT_TRY_ASSIGN(std::string path, path_for(name, false));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return fail_errno(fmt::format("stat of {}", path));
}

Result<std::vector<std::string>> LocalStorage::list_names(std::string_view prefix, bool unpublished) {
  std::vector<std::string> out;
  std::error_code ec;
  namespace fs = std::filesystem;
  // Walk only the prefix's directory when it names one ("packs/").
  std::string start = root_;
  if (!prefix.empty() && prefix.back() == '/') {
    BLKVAULT_TRY(check_name(prefix.substr(0, prefix.size() - 1)));
    start = root_ + "/" + std::string(prefix.substr(0, prefix.size() - 1));
    struct stat st {};
    if (::lstat(start.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return out;
  }
  // Another process may publish (link, then unlink a temp file) or delete
  // files while we walk: an entry that vanishes is skipped, never an error.
  for (auto it = fs::recursive_directory_iterator(start, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code st_ec;
    const auto st = it->symlink_status(st_ec);
    if (st_ec) continue;
    if (fs::is_symlink(st)) {
      it.disable_recursion_pending();
      continue;
    }
    if (!fs::is_regular_file(st)) continue;
    const std::string full = it->path().generic_string();
    if (full.size() <= root_.size() + 1 || full.compare(0, root_.size(), root_) != 0) continue;
    std::string rel = full.substr(root_.size() + 1);
    const bool temp = rel.find(".tmp-") != std::string::npos;  // an unpublished write
    if (temp != unpublished) continue;
    if (rel.compare(0, prefix.size(), prefix) == 0) out.push_back(std::move(rel));
  }
  if (ec) return fail(ErrorCode::kIo, fmt::format("listing {}: {}", start, ec.message()));
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<std::string>> LocalStorage::list(std::string_view prefix) { return list_names(prefix, false); }

Result<std::vector<std::string>> LocalStorage::list_unpublished(std::string_view prefix) {
  return list_names(prefix, true);
}

Status LocalStorage::remove(std::string_view name) {
  BLKVAULT_TRY_ASSIGN(std::string path, path_for(name, false));
  crash_point("before removing " + path);
  if (auto gone = env_.unlink(path); !gone) {
    if (gone.error().sys_errno() == ENOENT) return {};
    return fail(std::move(gone.error()));
  }
  return env_.fsync_dir(parent_dir(path));
}

}  // namespace blkvault::repo
