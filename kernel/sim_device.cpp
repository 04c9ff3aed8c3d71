#include "kernel/sim_device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include <xxhash.h>

#include "common/file_io.h"

namespace blkvault::kernel::sim {
namespace {

constexpr uint64_t kMaxBlockCount = 2097152;
constexpr unsigned kMinBlockShift = 16;
constexpr unsigned kMaxBlockShift = 26;
// Timestamp granularity assumed for the "trusted stamp" rule: filesystems with
// nanosecond timestamps still advance them by the kernel's coarse clock (one
// jiffy, at most 10 ms); filesystems with whole-second timestamps (and FAT's 2 s)
// show tv_nsec == 0.
constexpr int64_t kFineGranularityNs = 100'000'000;
constexpr int64_t kCoarseGranularityNs = 2'000'000'000;

int64_t ns_of(const struct timespec& ts) { return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec; }

}  // namespace

Geometry derive_geometry(uint64_t device_size_bytes) {
  Geometry g;
  uint64_t sectors = device_size_bytes / kSectorSize;
  g.capacity_bytes = sectors * kSectorSize;
  unsigned shift = kMinBlockShift;
  auto blocks = [&](unsigned s) {
    uint64_t blk_sectors = (uint64_t{1} << s) / kSectorSize;
    return (sectors + blk_sectors - 1) / blk_sectors;
  };
  while (shift < kMaxBlockShift && blocks(shift) > kMaxBlockCount) ++shift;
  g.block_size = uint32_t{1} << shift;
  g.block_count = static_cast<uint32_t>(blocks(shift));
  return g;
}

uint32_t derive_chunk_size(uint64_t capacity_bytes) {
  unsigned shift = 18;
  while (shift < 26 && (capacity_bytes >> shift) > (uint64_t{1} << 40)) ++shift;
  return uint32_t{1} << shift;
}

uint64_t block_fingerprint(std::span<const uint8_t> data) { return XXH3_64bits(data.data(), data.size()); }

Result<std::vector<uint64_t>> fingerprint_blocks(int fd, const std::string& path, uint64_t capacity_bytes,
                                                 uint32_t block_size, uint32_t first, uint32_t count,
                                                 bool regular_file, uint64_t* bytes_read) {
  std::vector<uint64_t> out;
  out.reserve(count);
  std::vector<uint8_t> buf(block_size);
  // Fingerprints of all-zero blocks: full size and the partial tail.
  std::vector<uint8_t> zeros(block_size, 0);
  const uint64_t zero_full = block_fingerprint(zeros);
  // Next offset holding data, or capacity when only holes remain (regular files).
  uint64_t next_data = 0;
  bool know_next_data = false;
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t start = uint64_t{first + i} * block_size;
    if (start >= capacity_bytes) {
      out.push_back(block_fingerprint({}));
      continue;
    }
    uint64_t len = std::min<uint64_t>(block_size, capacity_bytes - start);
    if (regular_file) {
      if (!know_next_data || next_data < start) {
        off_t r = ::lseek(fd, static_cast<off_t>(start), SEEK_DATA);
        if (r < 0) {
          next_data = errno == ENXIO ? capacity_bytes : start;  // ENXIO: only a hole remains
        } else {
          next_data = static_cast<uint64_t>(r);
        }
        know_next_data = true;
      }
      if (next_data >= start + len) {
        out.push_back(len == block_size ? zero_full : block_fingerprint({zeros.data(), len}));
        continue;
      }
    }
    BLKVAULT_TRY_ASSIGN(size_t got, pread_full(fd, {buf.data(), len}, start, path, /*allow_short=*/true));
    if (got < len) std::fill(buf.begin() + static_cast<ptrdiff_t>(got), buf.begin() + static_cast<ptrdiff_t>(len), 0);
    if (bytes_read) *bytes_read += got;
    out.push_back(block_fingerprint({buf.data(), len}));
  }
  return out;
}

Result<FileStamp> take_stamp(int fd, const std::string& path) {
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno("stat of " + path);
  FileStamp s;
  s.size = static_cast<uint64_t>(st.st_size);
  s.mtime_ns = ns_of(st.st_mtim);
  s.ctime_ns = ns_of(st.st_ctim);
  s.ino = st.st_ino;
  bool coarse = st.st_mtim.tv_nsec == 0 && st.st_ctim.tv_nsec == 0;
  int64_t granularity = coarse ? kCoarseGranularityNs : kFineGranularityNs;
  s.trusted = S_ISREG(st.st_mode) && s.ctime_ns + granularity < ns_of(now) && s.mtime_ns <= s.ctime_ns;
  return s;
}

Result<uint64_t> device_size(int fd, const std::string& path) { return fd_size(fd, path); }

}  // namespace blkvault::kernel::sim
