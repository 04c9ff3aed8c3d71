#include "cbt/changed_extents.h"

#include <charconv>
#include <sstream>

namespace blkvault::cbt {

std::string Baseline::encode() const {
  return "cbt1 " + kernel::to_string(generation_id) + " " + std::to_string(snap_number) + " " +
         std::to_string(block_size_bytes) + " " + std::to_string(capacity_bytes);
}

namespace {
template <class T>
bool parse_number(const std::string& s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}
}  // namespace

Result<Baseline> Baseline::decode(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string tag, uuid, snap, bs, cap, extra;
  auto bad = [&] { return fail(ErrorCode::kCorrupt, "invalid CBT baseline \"" + std::string(text) + "\""); };
  if (!(in >> tag >> uuid >> snap >> bs >> cap) || (in >> extra) || tag != "cbt1") return bad();
  Baseline b;
  auto id = kernel::parse_uuid(uuid);
  unsigned snap_value = 0;
  if (!id || !parse_number(snap, snap_value) || snap_value > 255 || !parse_number(bs, b.block_size_bytes) ||
      !parse_number(cap, b.capacity_bytes))
    return bad();
  b.generation_id = *id;
  b.snap_number = static_cast<uint8_t>(snap_value);
  return b;
}

Baseline from_info(const kernel::CbtInfo& info) {
  return Baseline{info.generation_id, info.snap_number, info.block_size_bytes, info.capacity_bytes};
}

std::string to_string(FullReadReason reason) {
  switch (reason) {
    case FullReadReason::kNoBaseline: return "no baseline";
    case FullReadReason::kGenerationChanged: return "CBT generation changed";
    case FullReadReason::kCapacityChanged: return "device capacity changed";
    case FullReadReason::kBlockSizeChanged: return "CBT block size changed";
    case FullReadReason::kSnapNumberNotAdvanced: return "CBT snapshot number did not advance (wrap)";
    case FullReadReason::kMapSizeMismatch: return "CBT map size inconsistent with device";
  }
  return "unknown";
}

Plan plan_read(const kernel::CbtInfo& info, std::span<const uint8_t> map,
               const std::optional<Baseline>& baseline, uint64_t chunk_size_bytes) {
  if (!baseline) return FullRead{FullReadReason::kNoBaseline};
  if (baseline->generation_id != info.generation_id) return FullRead{FullReadReason::kGenerationChanged};
  if (baseline->block_size_bytes != info.block_size_bytes) return FullRead{FullReadReason::kBlockSizeChanged};
  if (baseline->capacity_bytes != info.capacity_bytes) return FullRead{FullReadReason::kCapacityChanged};
  if (info.snap_number <= baseline->snap_number) return FullRead{FullReadReason::kSnapNumberNotAdvanced};
  const uint64_t bs = info.block_size_bytes;
  if (bs == 0 || map.size() != info.block_count ||
      static_cast<uint64_t>(info.block_count) * bs < info.capacity_bytes ||
      (info.block_count > 0 && static_cast<uint64_t>(info.block_count - 1) * bs >= info.capacity_bytes))
    return FullRead{FullReadReason::kMapSizeMismatch};

  ChangedExtents out;
  const uint64_t cap = info.capacity_bytes;
  auto add = [&](uint64_t begin, uint64_t end) {
    begin = begin / chunk_size_bytes * chunk_size_bytes;
    end = std::min(cap, (end + chunk_size_bytes - 1) / chunk_size_bytes * chunk_size_bytes);
    if (!out.extents.empty()) {
      auto& last = out.extents.back();
      if (last.offset_bytes + last.length_bytes >= begin) {
        last.length_bytes = std::max(last.offset_bytes + last.length_bytes, end) - last.offset_bytes;
        return;
      }
    }
    out.extents.push_back({begin, end - begin});
  };
  for (uint64_t i = 0; i < map.size();) {
    if (map[i] <= baseline->snap_number) { ++i; continue; }
    uint64_t j = i;
    while (j < map.size() && map[j] > baseline->snap_number) ++j;
    out.changed_blocks += j - i;
    uint64_t begin = i * bs, end = std::min(cap, j * bs);
    out.changed_bytes += end - begin;
    add(begin, end);
    i = j;
  }
  for (const auto& e : out.extents) out.aligned_bytes += e.length_bytes;
  return out;
}

}  // namespace blkvault::cbt
