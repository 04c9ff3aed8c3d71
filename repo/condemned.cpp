#include "repo/condemned.h"

#include <algorithm>
#include <chrono>
#include <set>

#include <nlohmann/json.hpp>

#include "repo/json_fields.h"
#include "repo/manifest.h"
#include "repo/storage.h"

namespace blkvault::repo {
namespace {

using nlohmann::json;

constexpr int kVersion = 1;
constexpr std::string_view kBackupsSuffix = ".backups";

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<std::string> strings(const json& j, const char* key) {
  std::vector<std::string> out;
  for (const auto& v : j.at(key)) out.push_back(v.get<std::string>());
  return out;
}

Result<json> read_json(Storage& storage, const std::string& name) {
  BLKVAULT_TRY_ASSIGN(auto bytes, storage.get(name));
  try {
    json j = json::parse(bytes.begin(), bytes.end());
    if (integer_field<int>(j, "version") != kVersion) {
      return fail(ErrorCode::kUnsupported, "condemnation " + name + " has version " +
                                               std::to_string(integer_field<int64_t>(j, "version")) +
                                               ", which this blkvault does not know");
    }
    return j;
  } catch (const std::exception& e) {
    return fail(ErrorCode::kCorrupt, "condemnation " + name + " is damaged: " + e.what());
  }
}

}  // namespace

Result<std::vector<Condemnation>> load_condemnations(Storage& storage) {
  BLKVAULT_TRY_ASSIGN(auto names, storage.list(kCondemnedDir));
  const std::set<std::string> have(names.begin(), names.end());
  std::vector<Condemnation> out;
  for (const auto& name : names) {
    if (!parse_numbered_name(kCondemnedDir, name)) continue;  // a ".backups" file, or not ours
    Condemnation c;
    c.name = name;
    auto j = read_json(storage, name);
    if (!j) {
      if (j.error().code() == ErrorCode::kNotFound) continue;  // another gc finished it meanwhile
      if (j.error().code() != ErrorCode::kCorrupt) return tl::unexpected(std::move(j).error());
      c.damage = j.error().message();
      out.push_back(std::move(c));
      continue;
    }
    try {
      c.packs = strings(*j, "packs");
      c.files = strings(*j, "files");
      for (const auto& v : j->at("manifests")) c.manifests.push_back(v.get<GenerationId>());
      for (const auto& u : j->at("uploads")) {
        c.uploads.push_back({u.at("key").get<std::string>(), u.at("upload_id").get<std::string>()});
      }
    } catch (const std::exception& e) {
      c = Condemnation{name};
      c.damage = "condemnation " + name + " is damaged: " + e.what();
      out.push_back(std::move(c));
      continue;
    }
    const std::string backups = name + std::string(kBackupsSuffix);
    if (have.count(backups)) {
      auto b = read_json(storage, backups);
      if (b) {
        try {
          c.backups = strings(*b, "backups");
        } catch (const std::exception& e) {
          c.damage = "condemnation " + backups + " is damaged: " + e.what();
        }
      } else if (b.error().code() == ErrorCode::kCorrupt) {
        c.damage = b.error().message();
      } else if (b.error().code() != ErrorCode::kNotFound) {
        return tl::unexpected(std::move(b).error());
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

Status publish_condemnation(Storage& storage, Condemnation& c) {
  BLKVAULT_TRY_ASSIGN(auto names, storage.list(kCondemnedDir));
  uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  for (const auto& n : names) {
    auto at = parse_numbered_name(kCondemnedDir, n.substr(0, std::string_view(kCondemnedDir).size() + 20));
    if (at) ms = std::max(ms, *at + 1);
  }
  c.name = numbered_name(kCondemnedDir, ms);
  json uploads = json::array();
  for (const auto& u : c.uploads) uploads.push_back({{"key", u.key}, {"upload_id", u.upload_id}});
  const json j = {{"version", kVersion}, {"packs", c.packs},     {"manifests", c.manifests},
                  {"files", c.files},    {"uploads", uploads}};
  const std::string body = j.dump() + "\n";
  return storage.put(c.name, as_bytes(body));
}

Status publish_backups(Storage& storage, const Condemnation& c, const std::vector<std::string>& markers) {
  const json j = {{"version", kVersion}, {"backups", markers}};
  const std::string body = j.dump() + "\n";
  return storage.put(c.name + std::string(kBackupsSuffix), as_bytes(body));
}

Status remove_condemnation(Storage& storage, const Condemnation& c) {
  BLKVAULT_TRY(storage.remove(c.name));
  auto r = storage.remove(c.name + std::string(kBackupsSuffix));
  if (!r && r.error().code() != ErrorCode::kNotFound) return r;
  return {};
}

Status remove_orphan_backups(Storage& storage) {
  BLKVAULT_TRY_ASSIGN(auto names, storage.list(kCondemnedDir));
  const std::set<std::string> have(names.begin(), names.end());
  for (const auto& n : names) {
    if (n.size() <= kBackupsSuffix.size() || n.compare(n.size() - kBackupsSuffix.size(), kBackupsSuffix.size(), kBackupsSuffix) != 0) continue;
    if (!have.count(n.substr(0, n.size() - kBackupsSuffix.size()))) BLKVAULT_TRY(storage.remove(n));
  }
  return {};
}

}  // namespace blkvault::repo
