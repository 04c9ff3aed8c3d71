// Blob headers and ChunkCodec::open on arbitrary bytes (a damaged or hostile
// pack): errors only, never a crash, an over-allocation or wrong bytes.
#include <cstdlib>

#include "repo/chunk_codec.h"
#include "repo/crypto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault::repo;
  static ChunkKey key = [] {
    ChunkKey k{};
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 7 + 1);
    return k;
  }();
  static ChunkCodec codec(3);
  // The same bytes against an encrypted repository's codec: never opens
  // unless sealed with its key.
  static std::shared_ptr<const Keys> keys = [] {
    Secret master(kMasterKeyBytes);
    for (size_t i = 0; i < master.size(); ++i) master.data()[i] = static_cast<uint8_t>(i);
    return *Keys::derive(master.view(), Cipher::kXChaCha20Poly1305);
  }();
  static ChunkCodec sealed_codec(3, keys);
  std::span<const uint8_t> bytes(data, size);
  if (bytes.size() < BlobHeader::kSize) return 0;
  auto h = BlobHeader::decode(bytes.first(BlobHeader::kSize), "fuzz");
  if (!h) return 0;
  auto enc = sealed_codec.open(*h, bytes.subspan(BlobHeader::kSize), keys->chunk_key(), "fuzz");
  if (enc && enc->size() != h->raw_size) std::abort();
  auto out = codec.open(*h, bytes.subspan(BlobHeader::kSize), key, "fuzz");
  if (out) {
    // What opens must be exactly what the header promises, under our key.
    if (out->size() != h->raw_size || chunk_id(key, *out) != h->id) std::abort();
  }
  // And sealing arbitrary data must always open again.
  if (size <= (1 << 16)) {
    auto id = chunk_id(key, bytes);
    auto sealed = codec.seal(id, bytes);
    if (!sealed) std::abort();
    auto h2 = BlobHeader::decode(std::span(*sealed).first(BlobHeader::kSize), "fuzz sealed");
    if (!h2) std::abort();
    auto back = codec.open(*h2, std::span(*sealed).subspan(BlobHeader::kSize), key, "fuzz sealed");
    if (!back || *back != std::vector<uint8_t>(bytes.begin(), bytes.end())) std::abort();
  }
  return 0;
}
