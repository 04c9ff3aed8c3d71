// repo/chunk_codec.h — what happens to one chunk between the device and a pack:
// its id, zero detection, compression, and the blob header that makes a pack
// self-describing (docs/FORMAT.md, "Blobs").
//
// Thread-safety: the free functions are stateless. A ChunkCodec holds a zstd
// context and must be used by one thread at a time: give each pipeline worker
// its own (contexts are reused across chunks, which is what makes them cheap).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"

namespace blkvault::repo {

// XXH3-128 of the chunk's plaintext, keyed with the repository's secret.
using ChunkId = std::array<uint8_t, 16>;
std::string to_hex(const ChunkId& id);

inline constexpr size_t kChunkKeyBytes = 192;  // >= XXH3_SECRET_SIZE_MIN (136)
using ChunkKey = std::array<uint8_t, kChunkKeyBytes>;

ChunkId chunk_id(const ChunkKey& key, std::span<const uint8_t> data);
bool is_all_zero(std::span<const uint8_t> data);

enum class Compression : uint8_t { kNone = 0, kZstd = 1 };

// The fixed 48-byte header in front of every blob in a pack. Little-endian:
//   0  u32 magic "BVBL"      4  u8 version (1)   5  u8 compression   6  u8 cipher   7  u8 reserved (0)
//   8  16 bytes chunk id     24 u32 raw size     28 u32 stored size
//   32 u64 xxh3-64 of the stored bytes           40 u64 xxh3-64 of bytes 0..39
struct BlobHeader {
  static constexpr uint32_t kMagic = 0x4c425642;  // "BVBL"
  static constexpr uint8_t kVersion = 1;
  static constexpr size_t kSize = 48;
  Compression compression = Compression::kNone;
  uint8_t cipher = 0;  // repo::Cipher: 0 = plaintext (compression is then inside the ciphertext)
  ChunkId id{};
  uint32_t raw_size = 0;
  uint32_t stored_size = 0;
  uint64_t data_checksum = 0;

  std::array<uint8_t, kSize> encode() const;
  // kCorrupt on a bad magic or header checksum; kUnsupported on an unknown
  // version or compression. `where` names the pack and offset for messages.
  static Result<BlobHeader> decode(std::span<const uint8_t> bytes, const std::string& where);
};

class Keys;

// With `keys` (an encrypted repository), blobs are sealed with the data key:
// stored bytes = AEAD(u8 compression || payload), authenticated together with
// header bytes 0..31, so a changed header or blob never opens.
class ChunkCodec {
 public:
  explicit ChunkCodec(int zstd_level, std::shared_ptr<const Keys> keys = nullptr);
  ~ChunkCodec();
  ChunkCodec(const ChunkCodec&) = delete;
  ChunkCodec& operator=(const ChunkCodec&) = delete;

  // Header + stored bytes for `data` (zstd unless that does not shrink it).
  Result<std::vector<uint8_t>> seal(const ChunkId& id, std::span<const uint8_t> data);
  // The same in a buffer this codec reuses, valid until its next seal_view()
  // or seal(): a backup appends the blob to its pack and seals the next chunk,
  // with no chunk-sized buffer allocated, zero-filled and faulted in for each.
  Result<std::span<const uint8_t>> seal_view(const ChunkId& id, std::span<const uint8_t> data);
  // Checks the stored bytes' checksum, decompresses, and re-hashes against the
  // header's id. Any mismatch is kCorrupt naming `where` and the chunk id.
  Result<std::vector<uint8_t>> open(const BlobHeader& header, std::span<const uint8_t> stored, const ChunkKey& key,
                                    const std::string& where);
  // The same into `raw` (resized to the chunk's size): a caller that opens
  // chunk after chunk reuses one buffer instead of zeroing a new one each time.
  Status open_into(const BlobHeader& header, std::span<const uint8_t> stored, const ChunkKey& key,
                   const std::string& where, std::vector<uint8_t>& raw);

 private:
  struct Contexts;
  int level_;
  std::shared_ptr<const Keys> keys_;
  std::unique_ptr<Contexts> ctx_;
  // Reused between calls (a codec serves one thread at a time): the
  // compressed bytes seal() produces, which are also an encrypted blob's
  // plaintext, and the plaintext open_into() decrypts, so sealing and
  // opening allocate (and fault in) no second chunk-sized buffer each time.
  std::vector<uint8_t> scratch_;
  std::vector<uint8_t> sealed_;  // seal_view()'s blob: header + stored bytes
};

}  // namespace blkvault::repo
