#include "repo/chunk_codec.h"

#include <cstring>

#include <fmt/format.h>
#include <xxhash.h>
#include <zstd.h>

#include "common/coding.h"
#include "common/file_io.h"

namespace blkvault::repo {

std::string to_hex(const ChunkId& id) { return blkvault::to_hex(id); }

ChunkId chunk_id(const ChunkKey& key, std::span<const uint8_t> data) {
  XXH128_hash_t h = XXH3_128bits_withSecret(data.data(), data.size(), key.data(), key.size());
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  ChunkId id;
  std::memcpy(id.data(), c.digest, id.size());
  return id;
}

bool is_all_zero(std::span<const uint8_t> data) {
  size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    uint64_t v;
    std::memcpy(&v, data.data() + i, 8);
    if (v) return false;
  }
  for (; i < data.size(); ++i) {
    if (data[i]) return false;
  }
  return true;
}

std::array<uint8_t, BlobHeader::kSize> BlobHeader::encode() const {
  std::array<uint8_t, kSize> b{};
  put_le<uint32_t>(&b[0], kMagic);
  b[4] = kVersion;
  b[5] = static_cast<uint8_t>(compression);
  put_le<uint16_t>(&b[6], 0);
  std::memcpy(&b[8], id.data(), id.size());
  put_le<uint32_t>(&b[24], raw_size);
  put_le<uint32_t>(&b[28], stored_size);
  put_le<uint64_t>(&b[32], data_checksum);
  put_le<uint64_t>(&b[40], XXH3_64bits(b.data(), 40));
  return b;
}

Result<BlobHeader> BlobHeader::decode(std::span<const uint8_t> b, const std::string& where) {
  if (b.size() < kSize) return fail(ErrorCode::kCorrupt, fmt::format("{}: blob header truncated", where));
  if (get_le<uint32_t>(&b[0]) != kMagic) return fail(ErrorCode::kCorrupt, fmt::format("{}: not a blob header (bad magic)", where));
  if (get_le<uint64_t>(&b[40]) != XXH3_64bits(b.data(), 40)) {
    return fail(ErrorCode::kCorrupt, fmt::format("{}: blob header checksum mismatch", where));
  }
  if (b[4] != kVersion) {
    return fail(ErrorCode::kUnsupported, fmt::format("{}: blob format version {} is newer than this blkvault understands", where, b[4]));
  }
  if (b[5] > static_cast<uint8_t>(Compression::kZstd)) {
    return fail(ErrorCode::kUnsupported, fmt::format("{}: unknown compression {}", where, b[5]));
  }
  BlobHeader h;
  h.compression = static_cast<Compression>(b[5]);
  std::memcpy(h.id.data(), &b[8], h.id.size());
  h.raw_size = get_le<uint32_t>(&b[24]);
  h.stored_size = get_le<uint32_t>(&b[28]);
  h.data_checksum = get_le<uint64_t>(&b[32]);
  if (h.compression == Compression::kNone && h.raw_size != h.stored_size) {
    return fail(ErrorCode::kCorrupt, fmt::format("{}: raw blob with differing sizes", where));
  }
  return h;
}

struct ChunkCodec::Contexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ~Contexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};

ChunkCodec::ChunkCodec(int zstd_level) : level_(zstd_level), ctx_(std::make_unique<Contexts>()) {}
ChunkCodec::~ChunkCodec() = default;

Result<std::vector<uint8_t>> ChunkCodec::seal(const ChunkId& id, std::span<const uint8_t> data) {
  if (data.size() > UINT32_MAX) return fail(ErrorCode::kInternal, "chunk larger than 4 GiB");
  std::vector<uint8_t> out(BlobHeader::kSize + ZSTD_compressBound(data.size()));
  size_t n = ZSTD_compressCCtx(ctx_->c, out.data() + BlobHeader::kSize, out.size() - BlobHeader::kSize, data.data(),
                               data.size(), level_);
  if (ZSTD_isError(n)) return fail(ErrorCode::kInternal, fmt::format("zstd: {}", ZSTD_getErrorName(n)));
  BlobHeader h;
  h.id = id;
  h.raw_size = static_cast<uint32_t>(data.size());
  if (n < data.size()) {
    h.compression = Compression::kZstd;
    h.stored_size = static_cast<uint32_t>(n);
  } else {
    h.compression = Compression::kNone;
    h.stored_size = h.raw_size;
    std::memcpy(out.data() + BlobHeader::kSize, data.data(), data.size());
  }
  out.resize(BlobHeader::kSize + h.stored_size);
  h.data_checksum = XXH3_64bits(out.data() + BlobHeader::kSize, h.stored_size);
  auto hb = h.encode();
  std::memcpy(out.data(), hb.data(), hb.size());
  return out;
}

Result<std::vector<uint8_t>> ChunkCodec::open(const BlobHeader& h, std::span<const uint8_t> stored, const ChunkKey& key,
                                              const std::string& where) {
  const std::string what = fmt::format("{}: chunk {}", where, to_hex(h.id));
  if (stored.size() != h.stored_size) return fail(ErrorCode::kCorrupt, what + ": stored size mismatch");
  if (XXH3_64bits(stored.data(), stored.size()) != h.data_checksum) {
    return fail(ErrorCode::kCorrupt, what + ": stored bytes fail their checksum");
  }
  std::vector<uint8_t> raw(h.raw_size);
  if (h.compression == Compression::kZstd) {
    size_t n = ZSTD_decompressDCtx(ctx_->d, raw.data(), raw.size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != raw.size()) return fail(ErrorCode::kCorrupt, what + ": does not decompress");
  } else {
    std::memcpy(raw.data(), stored.data(), stored.size());
  }
  if (chunk_id(key, raw) != h.id) return fail(ErrorCode::kCorrupt, what + ": content does not match its id");
  return raw;
}

}  // namespace blkvault::repo
