#include "repo/manifest.h"
#include "repo/json_fields.h"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "common/coding.h"

namespace blkvault::repo {
namespace {

constexpr uint32_t kMagic = 0x464d5642;  // "BVMF"
constexpr uint32_t kVersion = 1;
constexpr size_t kPrefix = 12;
constexpr size_t kChecksum = 8;

using nlohmann::json;

json audit_to_json(const CbtAudit& a) {
  char seed[24];
  std::snprintf(seed, sizeof seed, "%016llx", static_cast<unsigned long long>(a.seed));
  json missed = json::array();
  for (const auto& r : a.missed) missed.push_back({{"offset_bytes", r.offset_bytes}, {"length_bytes", r.length_bytes}});
  return {{"seed", seed},
          {"percent", a.percent},
          {"against", a.against},
          {"unchanged_chunks", a.unchanged_chunks},
          {"sampled_chunks", a.sampled_chunks},
          {"sampled_bytes", a.sampled_bytes},
          {"missed", std::move(missed)}};
}

// Throws json::exception or std::invalid_argument on a malformed object (the
// callers turn it into kCorrupt).
CbtAudit audit_from_json(const json& j) {
  CbtAudit a;
  const std::string seed = j.at("seed").get<std::string>();
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(seed.data(), seed.data() + seed.size(), v, 16);
  if (ec != std::errc() || p != seed.data() + seed.size() || seed.size() != 16) {
    throw std::invalid_argument("cbt_audit.seed '" + seed + "' is not 16 hex digits");
  }
  a.seed = v;
  a.percent = j.at("percent").get<double>();
  a.against = j.at("against").get<GenerationId>();
  a.unchanged_chunks = integer_field<uint64_t>(j, "unchanged_chunks");
  a.sampled_chunks = integer_field<uint64_t>(j, "sampled_chunks");
  a.sampled_bytes = integer_field<uint64_t>(j, "sampled_bytes");
  for (const auto& r : j.at("missed")) {
    a.missed.push_back({integer_field<uint64_t>(r, "offset_bytes"), integer_field<uint64_t>(r, "length_bytes")});
  }
  return a;
}

json device_to_json(const DeviceRecord& d) {
  json j = {{"name", d.name},
            {"size_bytes", d.size_bytes},
            {"complete", d.complete},
            {"baseline", d.baseline},
            {"mode", d.mode},
            {"reason", d.reason},
            {"changed_bytes", d.changed_bytes},
            {"read_bytes", d.read_bytes},
            {"new_bytes", d.new_bytes},
            {"stored_bytes", d.stored_bytes},
            {"chunks_changed", d.chunks_changed}};
  j["parent"] = d.parent ? json(*d.parent) : json(nullptr);
  if (!d.complete) j["error"] = d.error;
  if (d.cbt_audit) j["cbt_audit"] = audit_to_json(*d.cbt_audit);
  return j;
}

DeviceRecord device_from_json(const json& j) {
  DeviceRecord d;
  d.name = j.at("name").get<std::string>();
  d.size_bytes = integer_field<uint64_t>(j, "size_bytes");
  d.complete = j.at("complete").get<bool>();
  d.baseline = j.at("baseline").get<std::string>();
  d.mode = j.at("mode").get<std::string>();
  d.reason = j.at("reason").get<std::string>();
  d.changed_bytes = integer_field<uint64_t>(j, "changed_bytes");
  d.read_bytes = integer_field<uint64_t>(j, "read_bytes");
  d.new_bytes = integer_field<uint64_t>(j, "new_bytes");
  d.stored_bytes = integer_field<uint64_t>(j, "stored_bytes");
  d.chunks_changed = integer_field<uint64_t>(j, "chunks_changed");
  if (!j.at("parent").is_null()) d.parent = j.at("parent").get<GenerationId>();
  if (j.contains("error")) d.error = j.at("error").get<std::string>();
  // Absent in manifests written before the CBT audit existed, and when none ran.
  if (j.contains("cbt_audit")) d.cbt_audit = audit_from_json(j.at("cbt_audit"));
  return d;
}

}  // namespace

std::string encode_cbt_audit(const CbtAudit& audit) { return audit_to_json(audit).dump(); }

Result<CbtAudit> decode_cbt_audit(std::string_view text, const std::string& where) {
  try {
    return audit_from_json(json::parse(text));
  } catch (const std::exception& e) {
    return fail(ErrorCode::kCorrupt, where + ": bad cbt_audit record: " + e.what());
  }
}

std::string numbered_name(std::string_view dir, uint64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(id));
  return std::string(dir) + buf;
}

std::optional<uint64_t> parse_numbered_name(std::string_view dir, std::string_view name) {
  if (name.substr(0, dir.size()) != dir) return std::nullopt;
  name.remove_prefix(dir.size());
  if (name.size() != 20) return std::nullopt;
  uint64_t id = 0;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), id);
  if (ec != std::errc() || p != name.data() + name.size()) return std::nullopt;
  return id;
}

std::string manifest_name(GenerationId id) { return numbered_name("manifests/", id); }
std::optional<GenerationId> parse_manifest_name(std::string_view name) { return parse_numbered_name("manifests/", name); }

std::vector<uint8_t> Manifest::encode() const {
  json h = {{"repository", repository_id},
            {"chunk_size", chunk_size},
            {"generation", generation.id},
            {"state", std::string(to_string(generation.state))},
            {"started_ms", generation.started_ms},
            {"finished_ms", generation.finished_ms},
            {"host", generation.host},
            {"tool_version", generation.tool_version}};
  json devs = json::array();
  for (const auto& d : generation.devices) devs.push_back(device_to_json(d));
  h["devices"] = std::move(devs);
  const std::string header = h.dump();

  std::vector<uint8_t> out(kPrefix);
  put_le<uint32_t>(out.data(), kMagic);
  put_le<uint32_t>(out.data() + 4, kVersion);
  put_le<uint32_t>(out.data() + 8, static_cast<uint32_t>(header.size()));
  out.insert(out.end(), header.begin(), header.end());
  for (const auto& delta : deltas) {
    size_t at = out.size();
    out.resize(at + 8);
    put_le<uint64_t>(out.data() + at, delta.size());
    for (const auto& e : delta) {
      at = out.size();
      out.resize(at + 9 + (e.id ? 16 : 0));
      put_le<uint64_t>(out.data() + at, e.chunk_index);
      out[at + 8] = e.id ? 1 : 0;
      if (e.id) std::memcpy(out.data() + at + 9, e.id->data(), 16);
    }
  }
  const uint64_t sum = XXH3_64bits(out.data(), out.size());
  const size_t at = out.size();
  out.resize(at + kChecksum);
  put_le<uint64_t>(out.data() + at, sum);
  return out;
}

Result<Manifest> Manifest::decode(std::span<const uint8_t> b, const std::string& where) {
  auto corrupt = [&](const std::string& why) { return fail(ErrorCode::kCorrupt, "manifest " + where + ": " + why); };
  if (b.size() < kPrefix + kChecksum) return corrupt("truncated (" + std::to_string(b.size()) + " bytes)");
  if (get_le<uint32_t>(b.data()) != kMagic) return corrupt("not a manifest (bad magic)");
  const uint32_t version = get_le<uint32_t>(b.data() + 4);
  if (version > kVersion) {
    return fail(ErrorCode::kUnsupported,
                "manifest " + where + ": format version " + std::to_string(version) + " is newer than this blkvault");
  }
  const size_t body = b.size() - kChecksum;
  if (XXH3_64bits(b.data(), body) != get_le<uint64_t>(b.data() + body)) return corrupt("checksum mismatch");
  const uint32_t hlen = get_le<uint32_t>(b.data() + 8);
  if (kPrefix + hlen > body) return corrupt("header length past the end");

  Manifest m;
  try {
    const json h = json::parse(b.begin() + kPrefix, b.begin() + kPrefix + hlen);
    m.repository_id = h.at("repository").get<std::string>();
    m.chunk_size = integer_field<uint64_t>(h, "chunk_size");
    auto& g = m.generation;
    g.id = integer_field<GenerationId>(h, "generation");
    if (g.id == 0 || g.id > kMaxGenerationId) return corrupt("generation id " + std::to_string(g.id) + " out of range");
    const auto state = h.at("state").get<std::string>();
    if (state == "complete") {
      g.state = GenerationState::kComplete;
    } else if (state == "partial") {
      g.state = GenerationState::kPartial;
    } else {
      return corrupt("unexpected state '" + state + "'");
    }
    g.started_ms = integer_field<int64_t>(h, "started_ms");
    g.finished_ms = integer_field<int64_t>(h, "finished_ms");
    g.host = h.at("host").get<std::string>();
    g.tool_version = h.at("tool_version").get<std::string>();
    for (const auto& d : h.at("devices")) g.devices.push_back(device_from_json(d));
  } catch (const std::exception& e) {  // json::exception, or a bad cbt_audit seed
    return corrupt(std::string("bad header: ") + e.what());
  }

  size_t at = kPrefix + hlen;
  for (size_t d = 0; d < m.generation.devices.size(); ++d) {
    if (at + 8 > body) return corrupt("entries truncated");
    const uint64_t n = get_le<uint64_t>(b.data() + at);
    at += 8;
    if (n > (body - at) / 9) return corrupt("entry count past the end");
    std::vector<MapEntry> delta;
    delta.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      if (at + 9 > body) return corrupt("entries truncated");
      MapEntry e;
      e.chunk_index = get_le<uint64_t>(b.data() + at);
      const uint8_t kind = b[at + 8];
      at += 9;
      if (kind == 1) {
        if (at + 16 > body) return corrupt("entries truncated");
        ChunkId id;
        std::memcpy(id.data(), b.data() + at, 16);
        e.id = id;
        at += 16;
      } else if (kind != 0) {
        return corrupt("bad entry kind " + std::to_string(kind));
      }
      if (!delta.empty() && delta.back().chunk_index >= e.chunk_index) return corrupt("entries out of order");
      delta.push_back(e);
    }
    m.deltas.push_back(std::move(delta));
  }
  if (at != body) return corrupt("trailing bytes after the entries");
  return m;
}

}  // namespace blkvault::repo
