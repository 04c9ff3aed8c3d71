#include "repo/chunk_codec.h"

#include "repo/crypto.h"

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
  b[6] = cipher;
  b[7] = 0;
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
  if (b[6] > 2 || b[7] != 0) {
    return fail(ErrorCode::kUnsupported, fmt::format("{}: unknown cipher {}", where, b[6]));
  }
  BlobHeader h;
  h.compression = static_cast<Compression>(b[5]);
  h.cipher = b[6];
  std::memcpy(h.id.data(), &b[8], h.id.size());
  h.raw_size = get_le<uint32_t>(&b[24]);
  h.stored_size = get_le<uint32_t>(&b[28]);
  h.data_checksum = get_le<uint64_t>(&b[32]);
  if (h.cipher == 0 && h.compression == Compression::kNone && h.raw_size != h.stored_size) {
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

ChunkCodec::ChunkCodec(int zstd_level, std::shared_ptr<const Keys> keys)
    : level_(zstd_level), keys_(std::move(keys)), ctx_(std::make_unique<Contexts>()) {}
ChunkCodec::~ChunkCodec() = default;

Result<std::vector<uint8_t>> ChunkCodec::seal(const ChunkId& id, std::span<const uint8_t> data) {
  BLKVAULT_TRY_ASSIGN(auto blob, seal_view(id, data));
  return std::vector<uint8_t>(blob.begin(), blob.end());
}

Result<std::span<const uint8_t>> ChunkCodec::seal_view(const ChunkId& id, std::span<const uint8_t> data) {
  if (data.size() > UINT32_MAX) return fail(ErrorCode::kInternal, "chunk larger than 4 GiB");
  const bool encrypted = keys_ != nullptr && keys_->cipher() != Cipher::kNone;
  const size_t bound = ZSTD_compressBound(data.size());
  // Both buffers only grow (a codec serves one thread at a time, chunk after
  // chunk): the blob is compressed straight behind its header's room, or,
  // encrypted, behind the compression byte of its plaintext in scratch_.
  const size_t need = BlobHeader::kSize + bound + (encrypted ? 1 + keys_->overhead() : 0);
  if (sealed_.size() < need) sealed_.resize(need);
  if (encrypted && scratch_.size() < 1 + bound) scratch_.resize(1 + bound);
  uint8_t* const zout = encrypted ? scratch_.data() + 1 : sealed_.data() + BlobHeader::kSize;
  size_t n = ZSTD_compressCCtx(ctx_->c, zout, bound, data.data(), data.size(), level_);
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
    std::memcpy(zout, data.data(), data.size());
  }
  if (encrypted) {
    // plaintext = compression byte || payload; the header's compression says none.
    scratch_[0] = static_cast<uint8_t>(h.compression);
    const size_t plain_bytes = 1 + h.stored_size;
    h.compression = Compression::kNone;
    h.cipher = static_cast<uint8_t>(keys_->cipher());
    h.stored_size = static_cast<uint32_t>(plain_bytes + keys_->overhead());
    const auto ad = h.encode();
    BLKVAULT_TRY_ASSIGN(size_t sealed,
                        keys_->seal_into(Keys::Use::kData, std::span(scratch_).first(plain_bytes),
                                         std::span(ad).first(32),
                                         std::span(sealed_).subspan(BlobHeader::kSize, h.stored_size)));
    if (sealed != h.stored_size) return fail(ErrorCode::kInternal, "sealed size mismatch");
  }
  h.data_checksum = XXH3_64bits(sealed_.data() + BlobHeader::kSize, h.stored_size);
  auto hb = h.encode();
  std::memcpy(sealed_.data(), hb.data(), hb.size());
  return std::span<const uint8_t>(sealed_).first(BlobHeader::kSize + h.stored_size);
}

Result<std::vector<uint8_t>> ChunkCodec::open(const BlobHeader& h, std::span<const uint8_t> stored, const ChunkKey& key,
                                              const std::string& where) {
  std::vector<uint8_t> raw;
  BLKVAULT_TRY(open_into(h, stored, key, where, raw));
  return raw;
}

Status ChunkCodec::open_into(const BlobHeader& h, std::span<const uint8_t> stored, const ChunkKey& key,
                             const std::string& where, std::vector<uint8_t>& raw) {
  const std::string what = fmt::format("{}: chunk {}", where, to_hex(h.id));
  if (stored.size() != h.stored_size) return fail(ErrorCode::kCorrupt, what + ": stored size mismatch");
  if (XXH3_64bits(stored.data(), stored.size()) != h.data_checksum) {
    return fail(ErrorCode::kCorrupt, what + ": stored bytes fail their checksum");
  }
  std::vector<uint8_t>& plain = scratch_;
  Compression compression = h.compression;
  if (h.cipher != 0) {
    if (keys_ == nullptr || static_cast<uint8_t>(keys_->cipher()) != h.cipher) {
      return fail(ErrorCode::kCorrupt, what + ": encrypted with " +
                                           std::string(to_string(static_cast<Cipher>(h.cipher))) +
                                           ", which is not this repository's cipher");
    }
    const auto ad = h.encode();
    BLKVAULT_TRY(keys_->open_into(Keys::Use::kData, stored, std::span(ad).first(32), what, plain));
    if (plain.empty() || plain[0] > static_cast<uint8_t>(Compression::kZstd)) {
      return fail(ErrorCode::kCorrupt, what + ": bad compression byte");
    }
    compression = static_cast<Compression>(plain[0]);
    stored = std::span(plain).subspan(1);
    if (compression == Compression::kNone && stored.size() != h.raw_size) {
      return fail(ErrorCode::kCorrupt, what + ": raw blob with differing sizes");
    }
  } else if (keys_ != nullptr && keys_->cipher() != Cipher::kNone) {
    // An attacker must not be able to slip a plaintext blob into an encrypted repository.
    return fail(ErrorCode::kCorrupt, what + ": not encrypted, in an encrypted repository (tampered with)");
  }
  raw.resize(h.raw_size);
  if (compression == Compression::kZstd) {
    size_t n = ZSTD_decompressDCtx(ctx_->d, raw.data(), raw.size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != raw.size()) return fail(ErrorCode::kCorrupt, what + ": does not decompress");
  } else {
    std::memcpy(raw.data(), stored.data(), stored.size());
  }
  if (chunk_id(key, raw) != h.id) return fail(ErrorCode::kCorrupt, what + ": content does not match its id");
  return {};
}

}  // namespace blkvault::repo
