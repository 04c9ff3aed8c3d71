#include "cbt/audit_sample.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace blkvault::cbt {
namespace {

// splitmix64 (Steele, Lea, Flood 2014): small, fast and fully specified.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix(state_ += 0x9e3779b97f4a7c15ull); }
  // Uniform in [0, bound) without modulo bias. REQUIRES: bound > 0.
  uint64_t below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    for (;;) {
      const uint64_t v = next();
      if (v < limit) return v % bound;
    }
  }

 private:
  uint64_t state_;
};

}  // namespace

uint64_t audit_sample_size(uint64_t unchanged, double percent) {
  if (percent <= 0 || unchanged == 0) return 0;
  if (percent >= 100) return unchanged;
  const auto wanted = static_cast<uint64_t>(std::ceil(static_cast<double>(unchanged) * percent / 100.0));
  return std::min(unchanged, std::clamp(wanted, kAuditFloorChunks, kAuditCapChunks));
}

uint64_t audit_device_seed(uint64_t run_seed, uint64_t position) {
  return mix(run_seed ^ mix(position + 1));
}

AuditSample sample_unchanged_chunks(std::span<const ByteExtent> changed, uint64_t device_size, uint64_t chunk_size,
                                    double percent, uint64_t seed) {
  AuditSample out;
  const uint64_t count = (device_size + chunk_size - 1) / chunk_size;
  // The unchanged chunks are the gaps between the changed extents, in chunks.
  struct Gap {
    uint64_t first = 0, count = 0;
  };
  std::vector<Gap> gaps;
  uint64_t next = 0;
  for (const ByteExtent& e : changed) {
    const uint64_t first = e.offset_bytes / chunk_size;
    const uint64_t end = std::min(count, (e.offset_bytes + e.length_bytes + chunk_size - 1) / chunk_size);
    if (first > next) gaps.push_back({next, first - next});
    next = std::max(next, end);
  }
  if (count > next) gaps.push_back({next, count - next});
  for (const Gap& g : gaps) out.unchanged_chunks += g.count;

  const uint64_t k = audit_sample_size(out.unchanged_chunks, percent);
  if (k == 0) return out;
  // Ranks in [0, unchanged): all of them, or k distinct ones by Floyd's
  // algorithm (k draws, no list of the population needed).
  std::vector<uint64_t> ranks;
  if (k == out.unchanged_chunks) {
    ranks.resize(k);
    for (uint64_t i = 0; i < k; ++i) ranks[i] = i;
  } else {
    Generator gen(seed);
    std::unordered_set<uint64_t> chosen;
    const uint64_t n = out.unchanged_chunks;
    for (uint64_t j = n - k; j < n; ++j) {
      const uint64_t t = gen.below(j + 1);
      ranks.push_back(chosen.insert(t).second ? t : j);
      if (ranks.back() == j) chosen.insert(j);
    }
    std::sort(ranks.begin(), ranks.end());
  }
  // Rank -> chunk index through the gaps (both ascending).
  size_t gi = 0;
  uint64_t before = 0;  // unchanged chunks in gaps[0, gi)
  for (uint64_t r : ranks) {
    while (r >= before + gaps[gi].count) before += gaps[gi++].count;
    out.chunks.push_back(gaps[gi].first + (r - before));
  }
  return out;
}

}  // namespace blkvault::cbt
