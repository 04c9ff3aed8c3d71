#include "repo/lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "common/file_io.h"
#include "repo/s3_sigv4.h"
#include "repo/s3_storage.h"
#include "repo/storage.h"

namespace blkvault::repo {
namespace {

std::string holder_description(int fd) {
  char buf[256] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? "another process" : s;
}

// "pid 1234 on host db1 since 2026-11-25T03:00:00Z" (without the host for encrypted repositories).
std::string who(bool name_host) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::time_t now = std::time(nullptr);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return name_host ? fmt::format("pid {} on host {} since {}", ::getpid(), host, when)
                   : fmt::format("pid {} since {}", ::getpid(), when);
}

}  // namespace

Result<RepoLock> RepoLock::acquire(const std::string& repo_dir, double wait_seconds, bool name_host) {
  if (is_remote_repository(repo_dir)) {
    BLKVAULT_TRY_ASSIGN(std::shared_ptr<Storage> storage, S3Storage::open(repo_dir));
    BLKVAULT_TRY_ASSIGN(auto lock, acquire_object(*storage, wait_seconds, name_host, ObjectLockOptions::from_environment()));
    lock.owned_storage_ = std::move(storage);
    return lock;
  }
  const std::string path = repo_dir + "/lock";
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return fail_errno(fmt::format("locking {}", path));
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(ErrorCode::kLocked,
                  fmt::format("repository {} is locked by {}{}", repo_dir, holder_description(fd.get()),
                              wait_seconds > 0 ? fmt::format(" (waited {:g} s)", wait_seconds) : std::string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string text = who(name_host) + "\n";
  if (::ftruncate(fd.get(), 0) != 0) return fail_errno(fmt::format("writing {}", path));
  BLKVAULT_TRY(pwrite_full(fd.get(), {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 0, path));
  return RepoLock(std::move(fd));
}

Result<std::optional<std::string>> RepoLock::holder(const std::string& repo_dir) {
  if (is_remote_repository(repo_dir)) {
    BLKVAULT_TRY_ASSIGN(auto storage, S3Storage::open(repo_dir));
    return object_holder(*storage, ObjectLockOptions::from_environment());
  }
  const std::string path = repo_dir + "/lock";
  auto fd = open_file(path, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().code() == ErrorCode::kNotFound) return std::optional<std::string>();
    return tl::unexpected(std::move(fd).error());
  }
  // A shared lock is refused exactly while a writer holds its exclusive one.
  if (::flock(fd->get(), LOCK_SH | LOCK_NB) == 0) {
    ::flock(fd->get(), LOCK_UN);
    return std::optional<std::string>();
  }
  if (errno != EWOULDBLOCK) return fail_errno(fmt::format("checking the lock {}", path));
  return std::optional<std::string>(holder_description(fd->get()));
}

Result<std::vector<std::string>> RepoLock::backups(const std::string& repo_dir) {
  if (!is_remote_repository(repo_dir)) return std::vector<std::string>();
  BLKVAULT_TRY_ASSIGN(auto storage, S3Storage::open(repo_dir));
  return object_backups(*storage, ObjectLockOptions::from_environment());
}

// ---------------------------------------------------------------------------
// The object lock.

namespace {

constexpr const char* kLockName = "lock";
constexpr const char* kRefreshDir = "lock-refresh/";

std::string hex_token() {
  uint8_t b[12];
  std::random_device rd;
  for (auto& x : b) x = static_cast<uint8_t>(rd());
  std::string s;
  for (uint8_t x : b) s += fmt::format("{:02x}", x);
  return s;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct LockContent {
  std::string holder, token, host_key;
  int64_t time_ms = 0;
  int64_t pid = 0;
  bool backups_alongside = false;  // "backups: alongside": prune or gc, which let backups run
};

// This machine, without naming it: the first 16 hex digits of
// SHA-256(machine id, host name). Lets a host recognise its own dead
// processes' locks, also in an encrypted repository.
std::string host_key() {
  std::string id;
  if (auto f = read_file("/etc/machine-id")) id = *f;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return s3::sha256_hex("blkvault host " + id + "\n" + host).substr(0, 16);
}

// The lock's holder is a process of this host that no longer exists.
bool holder_is_dead_here(const LockContent& c) {
  if (c.pid <= 0 || c.host_key.empty() || c.host_key != host_key()) return false;
  return ::kill(static_cast<pid_t>(c.pid), 0) != 0 && errno == ESRCH;
}

std::optional<LockContent> parse_lock(const std::vector<uint8_t>& bytes) {
  LockContent c;
  std::string text(bytes.begin(), bytes.end());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    auto value = [&](std::string_view key) -> std::optional<std::string> {
      if (line.substr(0, key.size()) == key) return std::string(line.substr(key.size()));
      return std::nullopt;
    };
    if (auto v = value("holder: ")) c.holder = *v;
    if (auto v = value("token: ")) c.token = *v;
    if (auto v = value("time_ms: ")) c.time_ms = std::strtoll(v->c_str(), nullptr, 10);
    if (auto v = value("pid: ")) c.pid = std::strtoll(v->c_str(), nullptr, 10);
    if (auto v = value("host_key: ")) c.host_key = *v;
    if (auto v = value("backups: ")) c.backups_alongside = *v == "alongside";
    pos = nl + 1;
  }
  if (c.token.empty()) return std::nullopt;
  return c;
}

// The newest sign of life of the lock with `token`: its own time or its latest refresh.
Result<int64_t> last_alive(Storage& storage, const LockContent& c) {
  int64_t newest = c.time_ms;
  BLKVAULT_TRY_ASSIGN(auto names, storage.list(kRefreshDir));
  const std::string mine = std::string(kRefreshDir) + c.token + "-";
  for (const auto& n : names) {
    if (n.compare(0, mine.size(), mine) == 0) newest = std::max<int64_t>(newest, std::strtoll(n.c_str() + mine.size(), nullptr, 10));
  }
  return newest;
}

Status remove_refreshes(Storage& storage, const std::string& token) {
  BLKVAULT_TRY_ASSIGN(auto names, storage.list(kRefreshDir));
  const std::string mine = std::string(kRefreshDir) + token + "-";
  for (const auto& n : names) {
    if (n.compare(0, mine.size(), mine) == 0) BLKVAULT_TRY(storage.remove(n));
  }
  return {};
}

constexpr const char* kBackupPrefix = "locks/backup-";

std::string lock_text(bool name_host, const std::string& token, int64_t now, bool backups_alongside = false) {
  return fmt::format("holder: {}\ntoken: {}\ntime_ms: {}\npid: {}\nhost_key: {}\n{}", who(name_host), token, now,
                     ::getpid(), host_key(), backups_alongside ? "backups: alongside\n" : "");
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Whether the holder `c` of `name` shows no sign of life (or is a dead process
// of this host); when so, deletes `name` (re-read first, so a lock taken again
// meanwhile survives) and its refreshes, and returns true.
Result<bool> break_if_dead(Storage& storage, const std::string& name, const LockContent& c,
                           const ObjectLockOptions& options) {
  BLKVAULT_TRY_ASSIGN(int64_t alive, last_alive(storage, c));
  if (static_cast<double>(unix_ms() - alive) <= options.stale_s * 1000 && !holder_is_dead_here(c)) return false;
  auto again = storage.get(name);
  if (again) {
    auto now = parse_lock(*again);
    if (now && now->token == c.token) {
      BLKVAULT_TRY(storage.remove(name));
      (void)remove_refreshes(storage, c.token);
    }
  }
  return true;
}

}  // namespace

// The backup markers that show signs of life; stale markers are deleted on
// the way (their holders appended to `broke`, when given).
Result<std::vector<LiveBackup>> RepoLock::live_backups(Storage& storage, const ObjectLockOptions& options,
                                                       std::vector<std::string>* broke) {
  BLKVAULT_TRY_ASSIGN(auto names, storage.list(kBackupPrefix));
  std::vector<LiveBackup> live;
  for (const auto& n : names) {
    auto bytes = storage.get(n);
    if (!bytes) {
      if (bytes.error().code() == ErrorCode::kNotFound) continue;  // finished meanwhile
      return tl::unexpected(std::move(bytes).error());
    }
    auto c = parse_lock(*bytes);
    if (!c) {
      live.push_back({n, "an unreadable backup marker " + n});
      continue;
    }
    BLKVAULT_TRY_ASSIGN(bool dead, break_if_dead(storage, n, *c, options));
    if (dead) {
      if (broke != nullptr) broke->push_back(c->holder);
    } else {
      live.push_back({n, c->holder});
    }
  }
  return live;
}

struct RepoLock::ObjectLock {
  Storage* storage = nullptr;
  std::string name = kLockName;  // the lock object, or a backup marker
  std::string token;
  ObjectLockOptions options;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread refresher;

  void run() {
    std::string previous;
    std::unique_lock lk(mu);
    for (;;) {
      if (cv.wait_for(lk, std::chrono::duration<double>(options.refresh_s), [&] { return stop; })) return;
      lk.unlock();
      const std::string name = fmt::format("{}{}-{}", kRefreshDir, token, unix_ms());
      if (storage->put(name, {})) {
        if (!previous.empty()) (void)storage->remove(previous);
        previous = name;
      }
      lk.lock();
    }
  }

  ~ObjectLock() {
    {
      std::lock_guard g(mu);
      stop = true;
    }
    cv.notify_all();
    if (refresher.joinable()) refresher.join();
    // Delete the lock only while it is still ours (a holder that was presumed
    // dead may have lost it).
    if (auto bytes = storage->get(name)) {
      auto c = parse_lock(*bytes);
      if (c && c->token == token) (void)storage->remove(name);
    }
    (void)remove_refreshes(*storage, token);
  }

  Status check_held() {
    auto bytes = storage->get(name);
    if (!bytes && bytes.error().code() != ErrorCode::kNotFound) return tl::unexpected(std::move(bytes).error());
    auto c = bytes ? parse_lock(*bytes) : std::nullopt;
    if (!c || c->token != token) {
      return fail(ErrorCode::kLocked,
                  fmt::format("{} of repository {} was removed while this process held it (another host took it "
                              "for stale: was this process stopped for longer than BLKVAULT_LOCK_STALE_S?)",
                              name == kLockName ? std::string("the lock") : "the backup marker " + name,
                              storage->description()));
    }
    return {};
  }
};

ObjectLockOptions ObjectLockOptions::from_environment() {
  ObjectLockOptions o;
  if (const char* v = std::getenv("BLKVAULT_LOCK_STALE_S"); v != nullptr && *v) {
    const double s = std::strtod(v, nullptr);
    if (s > 0) {
      o.stale_s = s;
      o.refresh_s = s / 4;
    }
  }
  return o;
}

RepoLock::RepoLock(UniqueFd fd) : fd_(std::move(fd)) {}
RepoLock::RepoLock(std::unique_ptr<ObjectLock> object) : object_(std::move(object)) {}
RepoLock::RepoLock(RepoLock&&) noexcept = default;
RepoLock& RepoLock::operator=(RepoLock&&) noexcept = default;
RepoLock::~RepoLock() = default;

void RepoLock::also_hold(RepoLock other) { also_ = std::make_unique<RepoLock>(std::move(other)); }

Result<RepoLock> RepoLock::acquire_object(Storage& storage, double wait_seconds, bool name_host,
                                          const ObjectLockOptions& options, std::string* broke,
                                          std::vector<std::string>* broke_backups, bool backups_alongside) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
  auto waited = [&] { return wait_seconds > 0 ? fmt::format(" (waited {:g} s)", wait_seconds) : std::string(); };
  auto object = std::make_unique<ObjectLock>();
  object->storage = &storage;
  object->token = hex_token();
  object->options = options;
  for (;;) {
    const std::string content = lock_text(name_host, object->token, unix_ms(), backups_alongside);
    auto put = storage.put(kLockName, as_bytes(content));
    if (put) break;
    if (put.error().code() != ErrorCode::kInvalidArgument || put.error().sys_errno() != EEXIST) {
      return fail(std::move(put.error()).wrap("taking the lock of repository " + storage.description()));
    }
    // Held: by whom, and is it alive?
    auto bytes = storage.get(kLockName);
    if (!bytes) {
      if (bytes.error().code() == ErrorCode::kNotFound) continue;  // released meanwhile
      return fail(std::move(bytes.error()).wrap("reading the lock of repository " + storage.description()));
    }
    auto held = parse_lock(*bytes);
    std::string holder = held ? held->holder : "an unreadable lock object";
    if (held) {
      // Stale, or left by a process of this host that died (a crash, a kill): break it.
      BLKVAULT_TRY_ASSIGN(bool dead, break_if_dead(storage, kLockName, *held, options));
      if (dead) {
        if (broke != nullptr) *broke = holder;
        continue;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(ErrorCode::kLocked,
                  fmt::format("repository {} is locked by {}{}", storage.description(), holder, waited()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ObjectLock* o = object.get();
  o->refresher = std::thread([o] { o->run(); });
  RepoLock lock(std::move(object));
  // Held. Prune and gc let backups run alongside (gc condemns before it
  // deletes: docs/FORMAT.md). Other holders wait for the backups that started
  // before them to finish; new ones wait for this lock (acquire_shared_object).
  if (backups_alongside) return lock;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(auto live, live_backups(storage, options, broke_backups));
    if (live.empty()) return lock;
    if (std::chrono::steady_clock::now() >= deadline) {
      // Returning releases the lock again.
      return fail(ErrorCode::kLocked,
                  fmt::format("repository {} has a backup in progress: {}{}{}", storage.description(), live.front().holder,
                              live.size() > 1 ? fmt::format(" and {} more", live.size() - 1) : std::string(),
                              waited()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // a few requests per marker each time
  }
}

Result<RepoLock> RepoLock::acquire_shared_object(Storage& storage, double wait_seconds, bool name_host,
                                                 const ObjectLockOptions& options, std::string* broke) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
  auto object = std::make_unique<ObjectLock>();
  object->storage = &storage;
  object->token = hex_token();
  object->name = kBackupPrefix + object->token;
  object->options = options;
  for (;;) {
    // The marker first, then a look at the lock: an exclusive holder puts the
    // lock first, then lists the markers. So of the two at least one sees the
    // other (the store's read-after-write and list-after-write consistency).
    const std::string content = lock_text(name_host, object->token, unix_ms());
    auto put = storage.put(object->name, as_bytes(content));
    if (!put) return fail(std::move(put.error()).wrap("publishing a backup marker in repository " + storage.description()));
    auto bytes = storage.get(kLockName);
    if (!bytes && bytes.error().code() != ErrorCode::kNotFound) {
      (void)storage.remove(object->name);
      return fail(std::move(bytes.error()).wrap("reading the lock of repository " + storage.description()));
    }
    if (!bytes) break;  // free
    auto held = parse_lock(*bytes);
    std::string holder = held ? held->holder : "an unreadable lock object";
    if (held) {
      auto dead = break_if_dead(storage, kLockName, *held, options);
      if (!dead) {
        (void)storage.remove(object->name);
        return tl::unexpected(std::move(dead).error());
      }
      if (*dead) {
        if (broke != nullptr) *broke = holder;
        break;
      }
      if (held->backups_alongside) break;  // prune or gc: they run alongside backups
    }
    // Held by another maintenance command (an index rebuild, a key change):
    // step back and wait.
    BLKVAULT_TRY(storage.remove(object->name));
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(ErrorCode::kLocked,
                  fmt::format("repository {} is locked by {}{}", storage.description(), holder,
                              wait_seconds > 0 ? fmt::format(" (waited {:g} s)", wait_seconds) : std::string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ObjectLock* o = object.get();
  o->refresher = std::thread([o] { o->run(); });
  return RepoLock(std::move(object));
}

Status RepoLock::check_held() const {
  if (object_) BLKVAULT_TRY(object_->check_held());
  if (also_) BLKVAULT_TRY(also_->check_held());
  return {};
}

Result<std::vector<std::string>> RepoLock::object_backups(Storage& storage, const ObjectLockOptions& options) {
  BLKVAULT_TRY_ASSIGN(auto names, storage.list(kBackupPrefix));
  std::vector<std::string> out;
  for (const auto& n : names) {
    auto bytes = storage.get(n);
    if (!bytes) {
      if (bytes.error().code() == ErrorCode::kNotFound) continue;
      return tl::unexpected(std::move(bytes).error());
    }
    auto c = parse_lock(*bytes);
    if (!c) {
      out.push_back("an unreadable backup marker " + n);
      continue;
    }
    BLKVAULT_TRY_ASSIGN(int64_t alive, last_alive(storage, *c));
    std::string h = c->holder;
    if (static_cast<double>(unix_ms() - alive) > options.stale_s * 1000) {
      h += " (stale: the next prune or gc will remove it)";
    } else if (holder_is_dead_here(*c)) {
      h += " (that process is gone: the next prune or gc will remove it)";
    }
    out.push_back(h);
  }
  return out;
}

Result<std::optional<std::string>> RepoLock::object_holder(Storage& storage, const ObjectLockOptions& options) {
  auto bytes = storage.get(kLockName);
  if (!bytes) {
    if (bytes.error().code() == ErrorCode::kNotFound) return std::optional<std::string>();
    return tl::unexpected(std::move(bytes).error());
  }
  auto held = parse_lock(*bytes);
  if (!held) return std::optional<std::string>("an unreadable lock object");
  BLKVAULT_TRY_ASSIGN(int64_t alive, last_alive(storage, *held));
  std::string h = held->holder;
  if (static_cast<double>(unix_ms() - alive) > options.stale_s * 1000) {
    h += " (stale: the next writer will break it)";
  } else if (holder_is_dead_here(*held)) {
    h += " (that process is gone: the next writer will break it)";
  }
  return std::optional<std::string>(h);
}

}  // namespace blkvault::repo
