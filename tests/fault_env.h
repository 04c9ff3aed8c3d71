// tests/fault_env.h — an Env (common/env.h) that fails a chosen call or loses
// power, for the crash-safety tests (docs/RELIABILITY.md, "Power loss").
//
// FaultEnv passes every call to the real file system and keeps a model of what
// a power cut would leave (LevelDB's fault_injection_test idea, re-thought for
// links, renames and directories):
//   * a file's durable content is what it held at its last fsync (a new file:
//     empty; a file the layer had not touched yet: what it held then);
//   * a directory's durable entries are its entries at its last fsync (a
//     directory the layer had not touched yet: its entries then). Entries
//     created, linked, renamed or unlinked since are not durable, and a
//     directory whose own entry is not durable loses everything in it.
// Mutating calls are counted (1-based). At the armed call the env either fails
// that one call (EIO; later calls work) or loses power: that call and every
// later one fail without touching the disk. revert() then rewrites the disk to
// the model's durable state ("drops unsynced writes, undoes un-dirsynced
// links/renames"), as the machine would find it after rebooting, and resets.
//
// Its fsyncs only update the model (the real ones would only slow the tests).
// Limits: directories are never renamed or removed through it; files changed
// behind its back (not through it) after it first saw them are not modelled.
// REQUIRES for revert(): nothing holds a descriptor it handed out.
// Thread-safety: every call is serialised by one mutex.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/file_io.h"

namespace blkvault::test {

class FaultEnv final : public Env {
 public:
  struct Call {
    uint64_t n = 0;    // 1-based count of mutating calls
    std::string kind;  // "open", "write", "pwrite", "truncate", "fsync", "fsync_dir", "link", "rename", "unlink", "mkdir"
    std::string path;
  };
  struct RevertStats {
    uint64_t files_reverted = 0;  // files whose content went back to their last fsync
    uint64_t bytes_dropped = 0;   // bytes of those files that were not durable
    uint64_t entries_undone = 0;  // directory entries removed or restored
    bool dropped_anything() const { return files_reverted + entries_undone > 0; }
  };

  // Arms the fault at mutating call `n` (1-based, counted since construction
  // or the last revert()). 0 disarms.
  void fail_at(uint64_t n) { arm(n, false); }
  void lose_power_at(uint64_t n) { arm(n, true); }

  bool power_lost() const {
    std::lock_guard g(mu_);
    return power_lost_;
  }
  bool failed() const {
    std::lock_guard g(mu_);
    return failed_;
  }
  uint64_t calls() const {
    std::lock_guard g(mu_);
    return calls_;
  }
  std::vector<Call> trace() const {
    std::lock_guard g(mu_);
    return trace_;
  }

  // A deliberate ordering bug, to prove the tests catch one: fsyncs of files
  // (or directories) whose path `match`es are done but not made durable, as
  // if the code had skipped them.
  void ignore_file_syncs(std::function<bool(const std::string&)> match) {
    std::lock_guard g(mu_);
    ignore_file_sync_ = std::move(match);
  }
  void ignore_dir_syncs(std::function<bool(const std::string&)> match) {
    std::lock_guard g(mu_);
    ignore_dir_sync_ = std::move(match);
  }

  // Cuts the power (if the armed call has not) and rewrites the disk to its
  // durable state; then forgets everything and counts calls from 0 again.
  RevertStats revert() {
    std::lock_guard g(mu_);
    RevertStats stats;
    for (auto& [path, dir] : dirs_) {
      if (!reachable(path)) continue;  // its parent's pass removes it
      for (const auto& [name, e] : dir.live) {
        auto d = dir.durable.find(name);
        if (d != dir.durable.end() && d->second.dir == e.dir && d->second.node == e.node) continue;
        std::error_code ec;
        std::filesystem::remove_all(path + "/" + name, ec);
        if (d == dir.durable.end()) ++stats.entries_undone;  // else counted once, as restored, below
      }
      for (const auto& [name, e] : dir.durable) {
        const std::string full = path + "/" + name;
        if (e.dir) {
          if (::mkdir(full.c_str(), 0700) == 0) ++stats.entries_undone;
          continue;
        }
        auto l = dir.live.find(name);
        const bool same = l != dir.live.end() && !l->second.dir && l->second.node == e.node;
        if (same && !e.node->dirty) continue;
        if (!e.node->captured) continue;  // untouched since the layer saw it: on disk as it was
        std::string now;
        if (same) {
          auto cur = read_file(full);
          if (cur) now = *cur;
          if (now == e.node->durable) continue;
          ++stats.files_reverted;
          if (now.size() > e.node->durable.size()) stats.bytes_dropped += now.size() - e.node->durable.size();
        } else {
          ++stats.entries_undone;
        }
        write_plain(full, e.node->durable);
      }
    }
    dirs_.clear();
    fds_.clear();
    trace_.clear();
    calls_ = 0;
    fault_at_ = 0;
    power_lost_ = false;
    failed_ = false;
    return stats;
  }

  Result<UniqueFd> open(const std::string& path, int flags, mode_t mode) override {
    if ((flags & (O_CREAT | O_TRUNC | O_WRONLY | O_RDWR)) == 0) return Env::open(path, flags, mode);
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("open", path));
    std::shared_ptr<Node> node = entry_of(path).node;
    if (node != nullptr) capture(*node, path);
    BLKVAULT_TRY_ASSIGN(UniqueFd fd, Env::open(path, flags, mode));
    if (node == nullptr) {  // created: durable only once synced and its directory synced
      node = std::make_shared<Node>();
      node->captured = true;
      node->dirty = true;
      dir_of(path).live[base_name(path)] = Entry{node, false};
    }
    if ((flags & O_TRUNC) != 0) node->dirty = true;
    fds_[fd.get()] = Open{node, path};
    return fd;
  }

  Status write(int fd, std::span<const uint8_t> data, std::string_view what) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("write", std::string(what)));
    touch(fd);
    return Env::write(fd, data, what);
  }
  Status pwrite(int fd, std::span<const uint8_t> data, uint64_t offset, std::string_view what) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("pwrite", std::string(what)));
    touch(fd);
    return Env::pwrite(fd, data, offset, what);
  }
  Status truncate(int fd, uint64_t size_bytes, std::string_view what) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("truncate", std::string(what)));
    touch(fd);
    return Env::truncate(fd, size_bytes, what);
  }
  Status fsync(int fd, std::string_view what) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("fsync", std::string(what)));
    // No real fsync: what survives is the model's business, and the tests run
    // hundreds of crash points.
    auto it = fds_.find(fd);
    if (it == fds_.end()) return {};
    if (ignore_file_sync_ && ignore_file_sync_(it->second.path)) return {};
    BLKVAULT_TRY_ASSIGN(std::string content, content_of(fd, it->second.path));
    it->second.node->durable = std::move(content);
    it->second.node->captured = true;
    it->second.node->dirty = false;
    return {};
  }
  Status fsync_dir(const std::string& dir) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("fsync_dir", dir));
    if (auto fd = Env::open(dir, O_RDONLY | O_DIRECTORY, 0); !fd) return fail(std::move(fd.error()));
    if (ignore_dir_sync_ && ignore_dir_sync_(dir)) return {};
    Dir& d = dir_at(canonical(dir));
    d.durable = d.live;
    return {};
  }
  Status link(const std::string& from, const std::string& to) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("link", to));
    Entry e = entry_of(from);
    Dir& dt = dir_of(to);
    BLKVAULT_TRY(Env::link(from, to));
    dt.live[base_name(to)] = e;
    return {};
  }
  Status rename(const std::string& from, const std::string& to) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("rename", to));
    Entry e = entry_of(from);
    if (e.node != nullptr) capture(*e.node, from);
    Dir& dt = dir_of(to);
    if (auto old = dt.live.find(base_name(to)); old != dt.live.end() && old->second.node != nullptr) {
      capture(*old->second.node, to);
    }
    BLKVAULT_TRY(Env::rename(from, to));
    dt.live[base_name(to)] = e;
    dir_of(from).live.erase(base_name(from));
    return {};
  }
  Status unlink(const std::string& path) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("unlink", path));
    Dir& d = dir_of(path);
    auto it = d.live.find(base_name(path));
    if (it != d.live.end() && it->second.node != nullptr) capture(*it->second.node, path);
    BLKVAULT_TRY(Env::unlink(path));
    d.live.erase(base_name(path));
    return {};
  }
  Status mkdir(const std::string& path, mode_t mode) override {
    std::lock_guard g(mu_);
    BLKVAULT_TRY(check("mkdir", path));
    Dir& parent = dir_of(path);
    const std::string key = canonical(parent_dir(path)) + "/" + base_name(path);
    BLKVAULT_TRY(Env::mkdir(path, mode));
    parent.live[base_name(path)] = Entry{nullptr, true};
    dirs_[key] = Dir{};  // new and empty: nothing in it is durable yet
    return {};
  }

 private:
  struct Node {
    std::string durable;    // valid when captured
    bool captured = false;  // false: untouched since first seen, its disk content is durable
    bool dirty = false;     // written since its last fsync
  };
  struct Entry {
    std::shared_ptr<Node> node;  // null for a directory
    bool dir = false;
  };
  struct Dir {
    std::map<std::string, Entry> live, durable;
  };
  struct Open {
    std::shared_ptr<Node> node;
    std::string path;
  };

  void arm(uint64_t n, bool power) {
    std::lock_guard g(mu_);
    fault_at_ = n;
    power_ = power;
  }

  // Counts a mutating call and decides its fate. REQUIRES: mu_ held.
  Status check(const char* kind, const std::string& path) {
    if (power_lost_) return fail(ErrorCode::kIo, std::string("power lost (") + kind + " " + path + ")", EIO);
    ++calls_;
    trace_.push_back(Call{calls_, kind, path});
    if (calls_ != fault_at_) return {};
    if (power_) {
      power_lost_ = true;
      return fail(ErrorCode::kIo, std::string("power lost (") + kind + " " + path + ")", EIO);
    }
    failed_ = true;
    return fail(ErrorCode::kIo, std::string("injected failure of ") + kind + " " + path + ": Input/output error", EIO);
  }

  void touch(int fd) {
    if (auto it = fds_.find(fd); it != fds_.end()) it->second.node->dirty = true;
  }

  static std::string base_name(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
  }
  static std::string canonical(const std::string& dir) {
    std::error_code ec;
    auto c = std::filesystem::canonical(dir, ec);
    return ec ? dir : c.string();
  }

  // A directory's model, read from the disk the first time it is touched:
  // whatever it holds then counts as durable.
  Dir& dir_at(const std::string& key) {
    auto it = dirs_.find(key);
    if (it != dirs_.end()) return it->second;
    Dir d;
    std::error_code ec;
    for (auto& de : std::filesystem::directory_iterator(key, ec)) {
      std::error_code st_ec;
      const bool is_dir = de.symlink_status(st_ec).type() == std::filesystem::file_type::directory;
      d.live[de.path().filename().string()] = Entry{is_dir ? nullptr : std::make_shared<Node>(), is_dir};
    }
    d.durable = d.live;
    return dirs_.emplace(key, std::move(d)).first->second;
  }
  Dir& dir_of(const std::string& path) { return dir_at(canonical(parent_dir(path))); }

  // The entry a name has now (one the model has not seen appears as untouched).
  Entry entry_of(const std::string& path) {
    Dir& d = dir_of(path);
    const std::string name = base_name(path);
    auto it = d.live.find(name);
    if (it != d.live.end()) return it->second;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return Entry{};
    Entry e{S_ISDIR(st.st_mode) ? nullptr : std::make_shared<Node>(), S_ISDIR(st.st_mode)};
    d.live[name] = e;
    d.durable[name] = e;
    return e;
  }

  // What an open file holds now: through its descriptor when it is readable
  // (opening and closing the file by name would drop SQLite's POSIX locks on
  // it), else by name (a write-only temporary, synced before it is linked).
  static Result<std::string> content_of(int fd, const std::string& path) {
    if ((::fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY) return read_file(path);
    BLKVAULT_TRY_ASSIGN(uint64_t size, fd_size(fd, path));
    std::string out(size, '\0');
    BLKVAULT_TRY(pread_full(fd, {reinterpret_cast<uint8_t*>(out.data()), out.size()}, 0, path));
    return out;
  }

  // Saves a file's durable content before the layer changes it.
  static void capture(Node& node, const std::string& path) {
    if (node.captured) return;
    auto content = read_file(path);
    node.durable = content ? *content : std::string();
    node.captured = true;
  }

  static void write_plain(const std::string& path, const std::string& content) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    (void)pwrite_full(fd, {reinterpret_cast<const uint8_t*>(content.data()), content.size()}, 0, path);
    ::close(fd);
  }

  // A directory survives when its entry is durable in a surviving parent (or
  // its parent was never touched).
  bool reachable(const std::string& path) const {
    const std::string parent = parent_dir(path);
    auto p = dirs_.find(parent);
    if (p == dirs_.end() || parent == path) return true;
    auto e = p->second.durable.find(base_name(path));
    return e != p->second.durable.end() && e->second.dir && reachable(parent);
  }

  mutable std::mutex mu_;
  std::map<std::string, Dir> dirs_;  // by canonical path
  std::map<int, Open> fds_;
  std::vector<Call> trace_;
  uint64_t calls_ = 0;
  uint64_t fault_at_ = 0;
  bool power_ = false;
  bool power_lost_ = false;
  bool failed_ = false;
  std::function<bool(const std::string&)> ignore_file_sync_, ignore_dir_sync_;
};

}  // namespace blkvault::test
