#include "repo/sqlite_vfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <new>

namespace blkvault::repo::sql {
namespace {

// What SQLite allocates for each file: this, then the default VFS's own file
// object right behind it (szOsFile covers both).
// SQLite allocates szOsFile bytes with 8-byte alignment; EnvFile needs no more,
// and its size (a multiple of 8) keeps the default VFS's file behind it aligned.
struct EnvFile {
  sqlite3_file base{};   // must stay first: SQLite sees an EnvFile as a sqlite3_file
  EnvVfs* owner = nullptr;
  int fd = -1;           // our descriptor for writes; -1: an untracked file (temporary, read-only)
  bool dirsync = false;  // a new journal or WAL: its directory is fsynced at its first sync
  std::string path;

  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
  static EnvFile* of(sqlite3_file* f) { return reinterpret_cast<EnvFile*>(f); }
};
static_assert(alignof(EnvFile) <= 8 && sizeof(EnvFile) % 8 == 0);

int io_error(const Error& e, int code) { return e.sys_errno() == ENOSPC ? SQLITE_FULL : code; }

int x_close(sqlite3_file* file) {
  EnvFile* f = EnvFile::of(file);
  sqlite3_file* real = f->real();
  // SQLite's descriptor first: ours is closed once no lock of SQLite's can depend on it.
  const int rc = real->pMethods != nullptr ? real->pMethods->xClose(real) : SQLITE_OK;
  if (f->fd >= 0) ::close(f->fd);
  f->~EnvFile();
  return rc;
}

int x_read(sqlite3_file* file, void* buf, int amount, sqlite3_int64 offset) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xRead(real, buf, amount, offset);
}

int x_write(sqlite3_file* file, const void* buf, int amount, sqlite3_int64 offset) {
  EnvFile* f = EnvFile::of(file);
  if (f->fd < 0) return f->real()->pMethods->xWrite(f->real(), buf, amount, offset);
  auto st = f->owner->env().pwrite(f->fd, {static_cast<const uint8_t*>(buf), static_cast<size_t>(amount)},
                                   static_cast<uint64_t>(offset), f->path);
  return st ? SQLITE_OK : io_error(st.error(), SQLITE_IOERR_WRITE);
}

int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
  EnvFile* f = EnvFile::of(file);
  if (f->fd < 0) return f->real()->pMethods->xTruncate(f->real(), size);
  auto st = f->owner->env().truncate(f->fd, static_cast<uint64_t>(size), f->path);
  return st ? SQLITE_OK : io_error(st.error(), SQLITE_IOERR_TRUNCATE);
}

int x_sync(sqlite3_file* file, int flags) {
  EnvFile* f = EnvFile::of(file);
  if (f->fd < 0) return f->real()->pMethods->xSync(f->real(), flags);
  if (auto st = f->owner->env().fsync(f->fd, f->path); !st) return SQLITE_IOERR_FSYNC;
  if (f->dirsync) {
    if (auto st = f->owner->env().fsync_dir(parent_dir(f->path)); !st) return SQLITE_IOERR_DIR_FSYNC;
    f->dirsync = false;
  }
  return SQLITE_OK;
}

int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xFileSize(real, size);
}
int x_lock(sqlite3_file* file, int level) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xLock(real, level);
}
int x_unlock(sqlite3_file* file, int level) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xUnlock(real, level);
}
int x_check_reserved(sqlite3_file* file, int* out) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xCheckReservedLock(real, out);
}
int x_file_control(sqlite3_file* file, int op, void* arg) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xFileControl(real, op, arg);
}
int x_sector_size(sqlite3_file* file) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xSectorSize(real);
}
int x_device_characteristics(sqlite3_file* file) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xDeviceCharacteristics(real);
}
int x_shm_map(sqlite3_file* file, int page, int size, int extend, void volatile** out) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xShmMap(real, page, size, extend, out);
}
int x_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xShmLock(real, offset, n, flags);
}
void x_shm_barrier(sqlite3_file* file) {
  sqlite3_file* real = EnvFile::of(file)->real();
  real->pMethods->xShmBarrier(real);
}
int x_shm_unmap(sqlite3_file* file, int delete_flag) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xShmUnmap(real, delete_flag);
}
int x_fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xFetch(real, offset, amount, out);
}
int x_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  sqlite3_file* real = EnvFile::of(file)->real();
  return real->pMethods->xUnfetch(real, offset, p);
}

// The WAL needs version 2 (shared memory); 3 adds memory-mapped reads, which
// stay with the default VFS (mmap is off unless PRAGMA mmap_size sets it).
const sqlite3_io_methods kIo = {
    3,          x_close,       x_read,         x_write,      x_truncate,     x_sync,      x_file_size,
    x_lock,     x_unlock,      x_check_reserved, x_file_control, x_sector_size, x_device_characteristics,
    x_shm_map,  x_shm_lock,    x_shm_barrier,  x_shm_unmap,  x_fetch,        x_unfetch,
};

EnvVfs* owner_of(sqlite3_vfs* vfs) { return static_cast<EnvVfs*>(vfs->pAppData); }

int x_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  EnvVfs* self = owner_of(vfs);
  auto* f = new (file) EnvFile{};
  f->owner = self;
  file->pMethods = nullptr;
  const bool track = name != nullptr && (flags & SQLITE_OPEN_READWRITE) != 0 && (flags & SQLITE_OPEN_DELETEONCLOSE) == 0;
  if (track) {
    f->path = name;
    struct stat st {};
    const bool existed = ::stat(name, &st) == 0;
    const int oflags = O_RDWR | O_NOFOLLOW | ((flags & SQLITE_OPEN_CREATE) != 0 ? O_CREAT : 0);
    auto fd = self->env().open(f->path, oflags, 0600);
    if (!fd) {
      f->~EnvFile();
      return SQLITE_CANTOPEN;
    }
    f->fd = fd->release();
    f->dirsync = !existed && (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL | SQLITE_OPEN_SUPER_JOURNAL)) != 0;
  }
  sqlite3_vfs* base = self->base();
  const int rc = base->xOpen(base, name, f->real(), flags, out_flags);
  if (rc != SQLITE_OK) {
    if (f->fd >= 0) ::close(f->fd);
    f->~EnvFile();
    return rc;
  }
  file->pMethods = &kIo;
  return SQLITE_OK;
}

int x_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  Env& env = owner_of(vfs)->env();
  if (auto st = env.unlink(name); !st) {
    return st.error().sys_errno() == ENOENT ? SQLITE_IOERR_DELETE_NOENT : SQLITE_IOERR_DELETE;
  }
  if (sync_dir != 0) {
    if (auto st = env.fsync_dir(parent_dir(name)); !st) return SQLITE_IOERR_DIR_FSYNC;
  }
  return SQLITE_OK;
}

int x_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xAccess(base, name, flags, out);
}
int x_full_pathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xFullPathname(base, name, n, out);
}
void* x_dl_open(sqlite3_vfs* vfs, const char* name) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xDlOpen(base, name);
}
void x_dl_error(sqlite3_vfs* vfs, int n, char* out) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  base->xDlError(base, n, out);
}
void (*x_dl_sym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xDlSym(base, handle, symbol);
}
void x_dl_close(sqlite3_vfs* vfs, void* handle) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  base->xDlClose(base, handle);
}
int x_randomness(sqlite3_vfs* vfs, int n, char* out) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xRandomness(base, n, out);
}
int x_sleep(sqlite3_vfs* vfs, int us) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xSleep(base, us);
}
int x_current_time(sqlite3_vfs* vfs, double* out) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xCurrentTime(base, out);
}
int x_get_last_error(sqlite3_vfs* vfs, int n, char* out) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xGetLastError(base, n, out);
}
int x_current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  sqlite3_vfs* base = owner_of(vfs)->base();
  return base->xCurrentTimeInt64(base, out);
}

std::atomic<unsigned> g_vfs_counter{0};

}  // namespace

EnvVfs::EnvVfs(Env& env, sqlite3_vfs* base, std::string name) : env_(env), base_(base), name_(std::move(name)) {
  vfs_.iVersion = 2;
  vfs_.szOsFile = static_cast<int>(sizeof(EnvFile)) + base->szOsFile;
  vfs_.mxPathname = base->mxPathname;
  vfs_.zName = name_.c_str();
  vfs_.pAppData = this;
  vfs_.xOpen = x_open;
  vfs_.xDelete = x_delete;
  vfs_.xAccess = x_access;
  vfs_.xFullPathname = x_full_pathname;
  vfs_.xDlOpen = x_dl_open;
  vfs_.xDlError = x_dl_error;
  vfs_.xDlSym = x_dl_sym;
  vfs_.xDlClose = x_dl_close;
  vfs_.xRandomness = x_randomness;
  vfs_.xSleep = x_sleep;
  vfs_.xCurrentTime = x_current_time;
  vfs_.xGetLastError = x_get_last_error;
  vfs_.xCurrentTimeInt64 = x_current_time_int64;
}

Result<std::unique_ptr<EnvVfs>> EnvVfs::create(Env& env) {
  if (const int rc = sqlite3_initialize(); rc != SQLITE_OK) {
    return fail(ErrorCode::kInternal, std::string("initialising SQLite: ") + sqlite3_errstr(rc));
  }
  sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
  if (base == nullptr || base->iVersion < 2) return fail(ErrorCode::kInternal, "SQLite has no usable default VFS");
  std::unique_ptr<EnvVfs> vfs(new EnvVfs(env, base, "blkvault-env-" + std::to_string(g_vfs_counter++)));
  if (const int rc = sqlite3_vfs_register(&vfs->vfs_, 0); rc != SQLITE_OK) {
    return fail(ErrorCode::kInternal, std::string("registering the index's VFS: ") + sqlite3_errstr(rc));
  }
  return vfs;
}

EnvVfs::~EnvVfs() { sqlite3_vfs_unregister(&vfs_); }

}  // namespace blkvault::repo::sql
