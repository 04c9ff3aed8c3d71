#include "repo/pack.h"

#include "common/coding.h"

#include <cstring>

#include <fmt/format.h>
#include <xxhash.h>

namespace blkvault::repo {
namespace {

// Trailer: entries (28 bytes each: id 16, offset u64, length u32), then a
// 24-byte footer: magic u32 "BVPK", version u8, 3 reserved, count u32,
// trailer-entries checksum u64 (XXH3-64), footer checksum u32 (low 32 bits of
// XXH3-64 of footer bytes 0..19).
constexpr uint32_t kPackMagic = 0x4b505642;  // "BVPK"
constexpr uint8_t kPackVersion = 1;
constexpr size_t kEntrySize = 28;
constexpr size_t kFooterSize = 24;

}  // namespace

Result<std::unique_ptr<PackWriter>> PackWriter::create(Storage& storage, std::string name) {
  BLKVAULT_TRY_ASSIGN(auto w, storage.create(name));
  return std::unique_ptr<PackWriter>(new PackWriter(std::move(name), std::move(w)));
}

Result<PackEntry> PackWriter::append(const ChunkId& id, std::span<const uint8_t> blob) {
  PackEntry e{id, writer_->size(), static_cast<uint32_t>(blob.size())};
  BLKVAULT_TRY(writer_->append(blob));
  entries_.push_back(e);
  return e;
}

Status PackWriter::finish() {
  std::vector<uint8_t> t(entries_.size() * kEntrySize + kFooterSize);
  uint8_t* p = t.data();
  for (const auto& e : entries_) {
    std::memcpy(p, e.id.data(), 16);
    put_le<uint64_t>(p + 16, e.offset);
    put_le<uint32_t>(p + 24, e.length);
    p += kEntrySize;
  }
  const size_t entries_bytes = entries_.size() * kEntrySize;
  put_le<uint32_t>(p, kPackMagic);
  p[4] = kPackVersion;
  put_le<uint32_t>(p + 8, entries_.size());
  put_le<uint64_t>(p + 12, XXH3_64bits(t.data(), entries_bytes));
  put_le<uint32_t>(p + 20, XXH3_64bits(p, 20) & 0xffffffffu);
  BLKVAULT_TRY(writer_->append(t));
  return writer_->commit();
}

Result<std::vector<PackEntry>> read_pack_index(Storage& storage, const std::string& name) {
  BLKVAULT_TRY_ASSIGN(uint64_t size, storage.size(name));
  auto bad = [&](std::string_view why) { return fail(ErrorCode::kCorrupt, fmt::format("pack {}: {}", name, why)); };
  if (size < kFooterSize) return bad("too short to hold a trailer (truncated?)");
  BLKVAULT_TRY_ASSIGN(auto f, storage.get_range(name, size - kFooterSize, kFooterSize));
  if (get_le<uint32_t>(&f[0]) != kPackMagic) return bad("no pack trailer at its end (truncated or not a pack)");
  if ((XXH3_64bits(f.data(), 20) & 0xffffffffu) != get_le<uint32_t>(&f[20])) return bad("trailer footer checksum mismatch");
  if (f[4] != kPackVersion) {
    return fail(ErrorCode::kUnsupported, fmt::format("pack {}: pack format version {} is not supported", name, f[4]));
  }
  const uint64_t count = get_le<uint32_t>(&f[8]);
  if (count * kEntrySize + kFooterSize > size) return bad("trailer entry count exceeds the pack size");
  BLKVAULT_TRY_ASSIGN(auto t, storage.get_range(name, size - kFooterSize - count * kEntrySize, count * kEntrySize));
  if (XXH3_64bits(t.data(), t.size()) != get_le<uint64_t>(&f[12])) return bad("trailer entries checksum mismatch");
  std::vector<PackEntry> out(count);
  const uint64_t data_end = size - kFooterSize - count * kEntrySize;
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t* p = &t[i * kEntrySize];
    std::memcpy(out[i].id.data(), p, 16);
    out[i].offset = get_le<uint64_t>(p + 16);
    out[i].length = get_le<uint32_t>(p + 24);
    if (out[i].offset + out[i].length > data_end || out[i].length < BlobHeader::kSize) {
      return bad(fmt::format("trailer entry {} points outside the pack's data", i));
    }
  }
  return out;
}

Result<std::vector<PackEntry>> scan_pack(Storage& storage, const std::string& name) {
  BLKVAULT_TRY_ASSIGN(uint64_t size, storage.size(name));
  std::vector<PackEntry> out;
  uint64_t off = 0;
  while (off + BlobHeader::kSize <= size) {
    BLKVAULT_TRY_ASSIGN(auto hb, storage.get_range(name, off, BlobHeader::kSize));
    auto h = BlobHeader::decode(hb, fmt::format("pack {} offset {}", name, off));
    if (!h || off + BlobHeader::kSize + h->stored_size > size) break;
    out.push_back({h->id, off, static_cast<uint32_t>(BlobHeader::kSize + h->stored_size)});
    off += BlobHeader::kSize + h->stored_size;
  }
  return out;
}

}  // namespace blkvault::repo
