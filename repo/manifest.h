// repo/manifest.h — the immutable record of one committed generation
// (docs/FORMAT.md, "Manifests").
//
// Layout, little-endian:
//   0  "BVMF"   4  u32 version (1)   8  u32 header length H
//   12 H bytes of UTF-8 JSON: the generation's metadata and its devices
//   then, for each device in header order:
//      u64 entry count N, then N entries of
//      u64 chunk index, u8 kind (0 = zeros, 1 = data), 16-byte chunk id if data
//   last 8 bytes: u64 XXH3-64 of everything before them.
// A device's entries are its chunk map as a delta against its parent
// generation: an index not listed has the parent's chunk (or zeros without a
// parent), and indexes at or past ceil(size / chunk size) do not exist.
//
// Thread-safety: plain functions on values.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "repo/chunk_codec.h"
#include "repo/repository.h"

namespace blkvault::repo {

struct MapEntry {
  uint64_t chunk_index = 0;
  std::optional<ChunkId> id;  // nullopt: the chunk reads as zeros
  bool operator==(const MapEntry&) const = default;
};

struct Manifest {
  std::string repository_id;
  uint64_t chunk_size = 0;
  GenerationInfo generation;                 // state kComplete or kPartial
  std::vector<std::vector<MapEntry>> deltas;  // one per generation.devices, sorted by chunk_index

  std::vector<uint8_t> encode() const;
  // kCorrupt naming `where` for any damage; kUnsupported for a newer version.
  static Result<Manifest> decode(std::span<const uint8_t> bytes, const std::string& where);
};

// A device's `cbt_audit` object (docs/FORMAT.md) as compact JSON text, as the
// manifest and the index's generation_devices.cbt_audit hold it. decode gives
// kCorrupt naming `where` for anything that is not such an object.
std::string encode_cbt_audit(const CbtAudit& audit);
Result<CbtAudit> decode_cbt_audit(std::string_view text, const std::string& where);

// "manifests/00000000000000000042"; parse_manifest_name is its inverse
// (nullopt for any other name, e.g. a leftover temp file).
std::string manifest_name(GenerationId id);
// The same for any "<dir>/<20 digits>" name (tombstones: "pruned/").
std::string numbered_name(std::string_view dir, uint64_t id);
std::optional<uint64_t> parse_numbered_name(std::string_view dir, std::string_view name);
std::optional<GenerationId> parse_manifest_name(std::string_view name);

}  // namespace blkvault::repo
