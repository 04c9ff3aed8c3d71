// Repository::diff: changed chunk ranges between two generations (repo/diff.h).
#include "repo/diff.h"

#include <algorithm>
#include <map>

#include "repo/repository_impl.h"

namespace blkvault::repo {

std::vector<uint64_t> differing_indices(const std::vector<std::pair<uint64_t, ChunkId>>& a,
                                        const std::vector<std::pair<uint64_t, ChunkId>>& b, uint64_t count) {
  std::vector<uint64_t> out;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    const uint64_t ia = i < a.size() ? a[i].first : UINT64_MAX;
    const uint64_t ib = j < b.size() ? b[j].first : UINT64_MAX;
    const uint64_t idx = std::min(ia, ib);
    if (idx >= count) break;
    if (ia == ib) {
      if (a[i].second != b[j].second) out.push_back(idx);
      ++i, ++j;
    } else {
      out.push_back(idx);  // a chunk on one side, zeros on the other
      (ia < ib ? i : j)++;
    }
  }
  return out;
}

std::vector<DeviceDiff::Range> diff_ranges(const std::vector<uint64_t>& indices, uint64_t chunk_size,
                                           uint64_t from_size, uint64_t to_size) {
  std::vector<DeviceDiff::Range> out;
  auto add = [&](uint64_t off, uint64_t end) {
    if (end <= off) return;
    if (!out.empty() && out.back().offset_bytes + out.back().length_bytes == off) {
      out.back().length_bytes += end - off;
    } else {
      out.push_back({off, end - off});
    }
  };
  const uint64_t common = std::min(from_size, to_size);
  for (uint64_t idx : indices) {
    const uint64_t off = idx * chunk_size;
    if (off >= common) break;
    add(off, std::min(off + chunk_size, common));
  }
  add(common, std::max(from_size, to_size));
  return out;
}

Result<DeviceDiff> Repository::diff(GenerationId a, GenerationId b, std::string_view device) {
  std::lock_guard guard(impl_->mu);
  DeviceDiff d;
  d.from = a;
  d.to = b;
  d.chunk_size = impl_->config.chunk_size;
  // Both sides must be restorable images of the device (same checks and
  // messages as restore).
  BLKVAULT_TRY_ASSIGN(auto gens_a, impl_->load_generations(a));
  BLKVAULT_TRY_ASSIGN(auto gens_b, impl_->load_generations(b));
  auto record = [&](const std::vector<GenerationInfo>& gens, GenerationId id) -> Result<DeviceRecord> {
    if (gens.empty()) return fail(ErrorCode::kNotFound, "generation " + std::to_string(id) + " does not exist");
    const auto& g = gens.front();
    if (g.state != GenerationState::kComplete && g.state != GenerationState::kPartial) {
      return fail(ErrorCode::kNotFound, "generation " + std::to_string(id) + " is " + std::string(to_string(g.state)) +
                                            ", not a committed backup");
    }
    const DeviceRecord* rec = g.device(device);
    if (rec == nullptr) {
      return fail(ErrorCode::kNotFound,
                  "generation " + std::to_string(id) + " has no device " + std::string(device));
    }
    if (!rec->complete) {
      return fail(ErrorCode::kInvalidArgument,
                  "device " + rec->name + " failed in generation " + std::to_string(id) + " (" + rec->error + ")");
    }
    return *rec;
  };
  BLKVAULT_TRY_ASSIGN(DeviceRecord ra, record(gens_a, a));
  BLKVAULT_TRY_ASSIGN(DeviceRecord rb, record(gens_b, b));
  d.device = ra.name;
  d.from_size_bytes = ra.size_bytes;
  d.to_size_bytes = rb.size_bytes;
  if (a == b) {
    return d;
  }
  BLKVAULT_TRY_ASSIGN(int64_t dev, impl_->device_rowid(ra.name, false));
  const auto lo = static_cast<int64_t>(std::min(a, b));
  const auto hi = static_cast<int64_t>(std::max(a, b));
  const uint64_t count_lo = (std::min(a, b) == a ? ra : rb).size_bytes;
  const uint64_t count_hi = (std::min(a, b) == a ? rb : ra).size_bytes;
  const uint64_t cs = d.chunk_size;
  const uint64_t n_lo = (count_lo + cs - 1) / cs, n_hi = (count_hi + cs - 1) / cs;
  // Rows valid at exactly one of lo and hi. Valid at g: gen_from <= g < gen_to.
  BLKVAULT_TRY_ASSIGN(auto q, impl_->db->prepare(
                                  "SELECT chunk_index, gen_from, chunk FROM chunk_map WHERE device = ?1 AND ("
                                  "(gen_from <= ?2 AND gen_to > ?2 AND gen_to <= ?3) OR "
                                  "(gen_from > ?2 AND gen_from <= ?3 AND gen_to > ?3))"));
  q.bind(1, dev).bind(2, lo).bind(3, hi);
  struct Side {
    int64_t lo = -1, hi = -1;  // chunk rowid valid at lo / at hi; -1: zeros
  };
  std::map<uint64_t, Side> candidates;
  for (;;) {
    BLKVAULT_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    const auto idx = static_cast<uint64_t>(q.int64(0));
    const bool at_lo = q.int64(1) <= lo;
    if (idx >= (at_lo ? n_lo : n_hi)) continue;  // past that side's end
    auto& s = candidates[idx];
    (at_lo ? s.lo : s.hi) = q.int64(2);
  }
  std::vector<uint64_t> changed;
  for (const auto& [idx, s] : candidates) {
    if (s.lo != s.hi) changed.push_back(idx);
  }
  const uint64_t common = std::min(d.from_size_bytes, d.to_size_bytes);
  d.changed_chunks = static_cast<uint64_t>(
      std::count_if(changed.begin(), changed.end(), [&](uint64_t i) { return i * cs < common; }));
  d.ranges = diff_ranges(changed, cs, d.from_size_bytes, d.to_size_bytes);
  for (const auto& r : d.ranges) d.changed_bytes += r.length_bytes;
  return d;
}

}  // namespace blkvault::repo
