// CBT: baseline strings, and plan_read on arbitrary maps and module answers.
// Every extent must be chunk-aligned, sorted, within the device, and cover
// every block the map says changed.
#include <cstdlib>
#include <cstring>

#include "cbt/changed_extents.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto b = cbt::Baseline::decode(text)) {
    auto again = cbt::Baseline::decode(b->encode());
    if (!again || !(*again == *b)) std::abort();
  }
  if (size < 24) return 0;
  kernel::CbtInfo info;
  uint32_t bs_shift = data[0] % 8;  // 4 KiB .. 512 KiB blocks
  info.block_size_bytes = 4096u << bs_shift;
  info.block_count = static_cast<uint32_t>((size - 24) & 0xffff);
  uint64_t cap = 0;
  std::memcpy(&cap, data + 1, 4);
  info.capacity_bytes = cap % (static_cast<uint64_t>(info.block_count) * info.block_size_bytes + 1);
  info.snap_number = data[5];
  std::memcpy(info.generation_id.data(), data + 6, 16);
  const uint64_t chunk = 65536ull << (data[22] % 9);
  std::optional<cbt::Baseline> base;
  if (data[23] & 1) {
    base = cbt::from_info(info);
    base->snap_number = static_cast<uint8_t>(data[23] >> 1);
  }
  std::span<const uint8_t> map(data + 24, size - 24);
  auto plan = cbt::plan_read(info, map, base, chunk);
  if (auto* ch = std::get_if<cbt::ChangedExtents>(&plan)) {
    uint64_t end = 0;
    for (const auto& e : ch->extents) {
      if (e.length_bytes == 0 || e.offset_bytes < end || e.offset_bytes % chunk != 0) std::abort();
      end = e.offset_bytes + e.length_bytes;
      if (end > info.capacity_bytes && end % chunk != 0) std::abort();
    }
  }
  return 0;
}
