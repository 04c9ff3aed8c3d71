// repo/pack.h — pack files: blobs appended one after another, then a trailer
// that lists them, so a pack streams while written and can be read and checked
// without the index (docs/FORMAT.md, "Packs").
//
// Thread-safety: a PackWriter is used by one thread at a time (the repository
// serialises appends); the free functions are stateless.
#pragma once

#include <compare>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "repo/chunk_codec.h"
#include "repo/storage.h"

namespace blkvault::repo {

// One blob of a pack: where its header starts and how long header + data are.
struct PackEntry {
  ChunkId id{};
  uint64_t offset = 0;
  uint32_t length = 0;  // BlobHeader::kSize + stored size
  bool operator==(const PackEntry&) const = default;
};

class PackWriter {
 public:
  // Starts pack `name` (e.g. "packs/3f/3f2a…") in `storage`. Nothing is visible
  // until finish() succeeds; destroying the writer before that discards it.
  static Result<std::unique_ptr<PackWriter>> create(Storage& storage, std::string name);

  // Appends one sealed blob (ChunkCodec::seal output); returns its entry.
  Result<PackEntry> append(const ChunkId& id, std::span<const uint8_t> sealed_blob);
  uint64_t size() const { return writer_->size(); }
  size_t count() const { return entries_.size(); }
  const std::string& name() const { return name_; }
  // Writes the trailer and publishes the pack durably.
  Status finish();

 private:
  PackWriter(std::string name, std::unique_ptr<Storage::Writer> w) : name_(std::move(name)), writer_(std::move(w)) {}
  std::string name_;
  std::unique_ptr<Storage::Writer> writer_;
  std::vector<PackEntry> entries_;
};

// The trailer's entries. kCorrupt if the trailer is missing or damaged (then
// scan_pack can still recover the blobs by walking their headers).
Result<std::vector<PackEntry>> read_pack_index(Storage& storage, const std::string& name);

// Walks a pack from offset 0 header by header (for a pack whose trailer is lost):
// returns the entries whose headers decode, stopping at the first that does not.
Result<std::vector<PackEntry>> scan_pack(Storage& storage, const std::string& name);

}  // namespace blkvault::repo
