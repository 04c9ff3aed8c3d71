#include "common/file_io.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include <fmt/format.h>

namespace blkvault {

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return fail_errno(fmt::format("opening {}", path));
  return UniqueFd(fd);
}

Result<size_t> pread_full(int fd, std::span<uint8_t> data, uint64_t offset, std::string_view what,
                          bool allow_short) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno(fmt::format("reading {} at offset {}", what, offset + done));
    }
    if (n == 0) {
      if (allow_short) return done;
      return fail(ErrorCode::kCorrupt,
                  fmt::format("reading {} at offset {}: unexpected end of file", what, offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

Status pwrite_full(int fd, std::span<const uint8_t> data, uint64_t offset, std::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno(fmt::format("writing {} at offset {}", what, offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status write_full(int fd, std::span<const uint8_t> data, std::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno(fmt::format("writing {}", what));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status fsync_fd(int fd, std::string_view what) {
  if (::fsync(fd) != 0) return fail_errno(fmt::format("syncing {}", what));
  return {};
}

Status fsync_dir(const std::string& dir) {
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(dir, O_RDONLY | O_DIRECTORY));
  BLKVAULT_TRY(fsync_fd(fd.get(), dir));
  return fd.close(dir);
}

Result<std::string> read_file(const std::string& path) {
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY | O_NOFOLLOW));
  BLKVAULT_TRY_ASSIGN(uint64_t size, fd_size(fd.get(), path));
  std::string out(size, '\0');
  BLKVAULT_TRY(pread_full(fd.get(), {reinterpret_cast<uint8_t*>(out.data()), out.size()}, 0, path));
  return out;
}

Status write_file_atomic(const std::string& path, std::string_view contents, mode_t mode) {
  static std::atomic<unsigned> counter{0};
  std::string tmp = fmt::format("{}.tmp-{}-{}", path, ::getpid(), counter++);
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode));
  auto body = [&]() -> Status {
    BLKVAULT_TRY(write_full(fd.get(), {reinterpret_cast<const uint8_t*>(contents.data()), contents.size()}, tmp));
    BLKVAULT_TRY(fsync_fd(fd.get(), tmp));
    BLKVAULT_TRY(fd.close(tmp));
    if (::rename(tmp.c_str(), path.c_str()) != 0) return fail_errno(fmt::format("renaming {} to {}", tmp, path));
    return fsync_dir(std::filesystem::path(path).parent_path().empty()
                         ? std::string(".")
                         : std::filesystem::path(path).parent_path().string());
  };
  Status st = body();
  if (!st) ::unlink(tmp.c_str());
  return st;
}

Result<uint64_t> fd_size(int fd, std::string_view what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno(fmt::format("stat of {}", what));
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) return fail_errno(fmt::format("size of {}", what));
    return bytes;
  }
  return static_cast<uint64_t>(st.st_size);
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

bool from_hex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace blkvault
