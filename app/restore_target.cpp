#include "app/restore_target.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "app/output.h"
#include "common/file_io.h"

namespace blkvault::app {

std::string mount_point_of(dev_t dev) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // "36 35 98:0 /mnt1 /mnt2 rw ..." : field 3 is major:minor, field 5 the mount point.
    std::istringstream ss(line);
    std::string id, parent, majmin, root, mnt;
    ss >> id >> parent >> majmin >> root >> mnt;
    if (majmin == fmt::format("{}:{}", major(dev), minor(dev))) return mnt;
  }
  return "";
}

namespace {

Result<bool> has_data(int fd, uint64_t size, const std::string& path) {
  std::vector<uint8_t> buf(std::min<uint64_t>(size, 1 << 20));
  BLKVAULT_TRY(pread_full(fd, buf, 0, path, /*allow_short=*/true));
  return std::any_of(buf.begin(), buf.end(), [](uint8_t b) { return b != 0; });
}

}  // namespace

Result<RestoreTarget> RestoreTarget::open(const std::string& path, uint64_t image_size, bool force) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return fail_errno(fmt::format("restore target {}", path));
    auto fd = open_file(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (!fd) return fail(std::move(fd).error().wrap("creating restore target"));
    if (::ftruncate(fd->get(), static_cast<off_t>(image_size)) != 0) {
      Error e = Error::from_errno(fmt::format("sizing restore target {} to {} bytes", path, image_size));
      ::unlink(path.c_str());
      return fail(std::move(e));
    }
    return RestoreTarget(path, std::move(*fd), image_size, /*created=*/true, /*block_device=*/false);
  }
  if (S_ISLNK(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("restore target {} is a symbolic link; give the real path", path));
  }
  if (S_ISBLK(st.st_mode)) {
    if (std::string mnt = mount_point_of(st.st_rdev); !mnt.empty()) {
      return fail(ErrorCode::kBusy, fmt::format("restore target {} is mounted on {}; unmount it first", path, mnt));
    }
    int fd = ::open(path.c_str(), O_RDWR | O_EXCL | O_CLOEXEC);
    if (fd < 0) {
      if (errno == EBUSY) {
        return fail(ErrorCode::kBusy, fmt::format("restore target {} is in use (mounted, or held by LVM/md/another program)", path), EBUSY);
      }
      return fail_errno(fmt::format("opening restore target {}", path));
    }
    UniqueFd owned(fd);
    BLKVAULT_TRY_ASSIGN(uint64_t dev_size, fd_size(fd, path));
    if (dev_size < image_size) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("restore target {} is too small: {} bytes, the image needs {} bytes", path, dev_size, image_size));
    }
    BLKVAULT_TRY_ASSIGN(bool data, has_data(fd, dev_size, path));
    if (data && !force) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("restore target {} is not empty; add --force to overwrite it", path));
    }
    return RestoreTarget(path, std::move(owned), image_size, false, true);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("restore target {} is neither a regular file nor a block device", path));
  }
  if (st.st_size > 0 && !force) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("restore target {} is not empty; add --force to overwrite it", path));
  }
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDWR | O_NOFOLLOW));
  if (::ftruncate(fd.get(), static_cast<off_t>(image_size)) != 0) {
    return fail_errno(fmt::format("sizing restore target {} to {} bytes", path, image_size));
  }
  return RestoreTarget(path, std::move(fd), image_size, false, false);
}

RestoreTarget::~RestoreTarget() {
  if (created_ && !committed_ && fd_.valid()) {
    fd_.reset();
    ::unlink(path_.c_str());
  }
}

Status RestoreTarget::write_at(uint64_t offset, std::span<const uint8_t> data) {
  return pwrite_full(fd_.get(), data, offset, path_);
}

Status RestoreTarget::read_at(uint64_t offset, std::span<uint8_t> data) {
  // A file shorter than the image was extended by open(): past its old end it reads zeros.
  auto n = pread_full(fd_.get(), data, offset, path_);
  if (!n) return fail(std::move(n).error());
  return {};
}

bool RestoreTarget::is_hole(uint64_t offset, uint64_t length) const {
  if (block_device_ || length == 0) return false;
  // Only positional I/O (pread/pwrite) uses this descriptor, so moving its
  // offset here disturbs nothing.
  const off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) return errno == ENXIO;  // no data from offset on (EINVAL: the filesystem cannot tell)
  return static_cast<uint64_t>(data) >= offset + length;
}

Status RestoreTarget::zero(uint64_t offset, uint64_t length) {
  if (length == 0 || created_) return {};  // a new file is already sparse there
  if (block_device_) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd_.get(), BLKZEROOUT, range) == 0) return {};
  } else if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                         static_cast<off_t>(length)) == 0) {
    return {};
  }
  // Fallback: write zeros.
  static const std::vector<uint8_t> kZeros(1 << 20, 0);
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min<uint64_t>(kZeros.size(), length - done);
    BLKVAULT_TRY(pwrite_full(fd_.get(), {kZeros.data(), n}, offset + done, path_));
    done += n;
  }
  return {};
}

Status RestoreTarget::commit() {
  BLKVAULT_TRY(fsync_fd(fd_.get(), path_));
  BLKVAULT_TRY(fd_.close(path_));
  committed_ = true;
  return {};
}

}  // namespace blkvault::app
