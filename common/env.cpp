#include "common/env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/file_io.h"

namespace blkvault {

Env& Env::real() {
  static Env env;
  return env;
}

Result<UniqueFd> Env::open(const std::string& path, int flags, mode_t mode) { return open_file(path, flags, mode); }

Status Env::write(int fd, std::span<const uint8_t> data, std::string_view what) { return write_full(fd, data, what); }

Status Env::pwrite(int fd, std::span<const uint8_t> data, uint64_t offset, std::string_view what) {
  return pwrite_full(fd, data, offset, what);
}

Status Env::truncate(int fd, uint64_t size_bytes, std::string_view what) {
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size_bytes));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return fail_errno(fmt::format("truncating {} to {} bytes", what, size_bytes));
  return {};
}

Status Env::fsync(int fd, std::string_view what) { return fsync_fd(fd, what); }

Status Env::fsync_dir(const std::string& dir) {
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(dir, O_RDONLY | O_DIRECTORY));
  BLKVAULT_TRY(fsync_fd(fd.get(), dir));
  return fd.close(dir);
}

Status Env::link(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) != 0) return fail_errno(fmt::format("linking {} to {}", from, to));
  return {};
}

Status Env::rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return fail_errno(fmt::format("renaming {} to {}", from, to));
  return {};
}

Status Env::unlink(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return fail_errno(fmt::format("removing {}", path));
  return {};
}

Status Env::mkdir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) return fail_errno(fmt::format("creating {}", path));
  return {};
}

std::string parent_dir(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

}  // namespace blkvault
