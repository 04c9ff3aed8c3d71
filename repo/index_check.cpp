// The index checked against the manifests (repo/index_check.h).
#include "repo/index_check.h"

#include <map>

#include "repo/repository_impl.h"

namespace blkvault::repo {
namespace {

using ChunkMap = std::map<uint64_t, ChunkId>;

// Manifests read on demand, each once.
class Manifests {
 public:
  explicit Manifests(Repository::Impl& impl) : impl_(impl) {}

  // The decoded manifest, or the reason it cannot be read.
  Result<const Manifest*> get(GenerationId id) {
    auto it = cache_.find(id);
    if (it == cache_.end()) it = cache_.emplace(id, load(id)).first;
    if (!it->second) return tl::unexpected(it->second.error());
    return &*it->second;
  }

  // The chunk map of `device` at `gen` by its chain of parents, and its size.
  Result<std::pair<ChunkMap, uint64_t>> map_of(GenerationId gen, const std::string& device) {
    std::vector<std::pair<const Manifest*, size_t>> chain;  // newest first
    for (std::optional<GenerationId> cur = gen; cur;) {
      if (chain.size() > cache_.size() + 100000) return fail(ErrorCode::kCorrupt, "a cycle of parents");
      BLKVAULT_TRY_ASSIGN(const Manifest* m, get(*cur));
      const auto& devs = m->generation.devices;
      size_t i = 0;
      while (i < devs.size() && devs[i].name != device) ++i;
      if (i == devs.size() || !devs[i].complete) {
        return fail(ErrorCode::kCorrupt, manifest_name(*cur) + " has no complete device " + device);
      }
      if (devs[i].parent && *devs[i].parent >= *cur) {
        return fail(ErrorCode::kCorrupt, manifest_name(*cur) + ": parent " + std::to_string(*devs[i].parent) +
                                             " is not older");
      }
      chain.emplace_back(m, i);
      cur = devs[i].parent;
    }
    ChunkMap map;
    uint64_t size = 0;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const auto& [m, i] = *it;
      size = m->generation.devices[i].size_bytes;
      const uint64_t count = (size + impl_.config.chunk_size - 1) / impl_.config.chunk_size;
      map.erase(map.lower_bound(count), map.end());
      for (const auto& e : m->deltas[i]) {
        if (e.id) {
          map[e.chunk_index] = *e.id;
        } else {
          map.erase(e.chunk_index);
        }
      }
    }
    return std::make_pair(std::move(map), size);
  }

 private:
  Result<Manifest> load(GenerationId id) {
    const std::string name = manifest_name(id);
    BLKVAULT_TRY_ASSIGN(auto sealed, impl_.storage->get(name));
    BLKVAULT_TRY_ASSIGN(auto bytes, impl_.open_metadata(name, std::move(sealed)));
    BLKVAULT_TRY_ASSIGN(auto m, Manifest::decode(bytes, name));
    if (m.repository_id != impl_.config.id || m.chunk_size != impl_.config.chunk_size || m.generation.id != id) {
      return fail(ErrorCode::kCorrupt, "manifest " + name + " does not belong to this repository");
    }
    return m;
  }

  Repository::Impl& impl_;
  std::map<GenerationId, Result<Manifest>> cache_;
};

// The first field in which two records of the same generation differ, or "".
std::string differs(const GenerationInfo& index, const GenerationInfo& manifest) {
  if (index.state != manifest.state) return "state";
  if (index.started_ms != manifest.started_ms) return "start time";
  if (index.finished_ms != manifest.finished_ms) return "finish time";
  if (index.host != manifest.host) return "host";
  if (index.tool_version != manifest.tool_version) return "tool version";
  if (index.devices.size() != manifest.devices.size()) return "device count";
  for (size_t i = 0; i < index.devices.size(); ++i) {
    const auto& a = index.devices[i];
    const auto& b = manifest.devices[i];
    const std::string d = "device " + b.name + " ";
    if (a.name != b.name) return "device name";
    if (a.size_bytes != b.size_bytes) return d + "size";
    if (a.complete != b.complete || a.error != b.error) return d + "state";
    if (a.parent != b.parent) return d + "parent";
    if (a.baseline != b.baseline) return d + "CBT baseline";
    if (a.mode != b.mode || a.reason != b.reason) return d + "mode";
    if (a.cbt_audit != b.cbt_audit) return d + "CBT audit";
    if (a.changed_bytes != b.changed_bytes || a.read_bytes != b.read_bytes || a.new_bytes != b.new_bytes ||
        a.stored_bytes != b.stored_bytes || a.chunks_changed != b.chunks_changed) {
      return d + "figures";
    }
  }
  return "";
}

// The first chunk index at which the index's image and the manifests differ.
std::optional<uint64_t> first_difference(const DeviceImage& image, const ChunkMap& expect) {
  auto e = expect.begin();
  for (const auto& c : image.chunks) {
    if (e == expect.end() || e->first != c.chunk_index || e->second != c.id) {
      return e == expect.end() ? c.chunk_index : std::min(e->first, c.chunk_index);
    }
    ++e;
  }
  if (e != expect.end()) return e->first;
  return std::nullopt;
}

const std::string kRebuild = "; the index is damaged: rebuild it (blkvault index rebuild)";

}  // namespace

Status check_index_against_manifests(Repository::Impl& impl, const std::vector<GenerationInfo>& gens,
                                     bool all_generations, std::vector<std::string>& problems) {
  Manifests manifests(impl);
  if (all_generations) {
    // A manifest on disk the index lacks is a writer's lag when it reads
    // (the next open replays it), and damage when it does not.
    BLKVAULT_TRY_ASSIGN(auto unindexed, impl.unindexed_manifests());
    for (auto id : unindexed) {
      auto m = manifests.get(id);
      if (!m) problems.push_back("generation " + std::to_string(id) + " is not in the index: " + m.error().message());
    }
    // Removed generations whose manifests are kept as parents.
    BLKVAULT_TRY_ASSIGN(auto q, impl.db->prepare("SELECT id FROM generations WHERE state = 'pruned'"));
    for (;;) {
      BLKVAULT_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      const auto id = static_cast<GenerationId>(q.int64(0));
      BLKVAULT_TRY_ASSIGN(bool kept, impl.storage->exists(manifest_name(id)));
      if (!kept) continue;
      auto m = manifests.get(id);
      if (!m) problems.push_back("removed generation " + std::to_string(id) + " (kept as a parent): " + m.error().message());
    }
  }
  std::map<std::string, std::pair<GenerationId, ChunkMap>> last;  // device -> its previous generation's map
  for (const auto& g : gens) {
    auto m = manifests.get(g.id);
    if (!m) continue;  // verify reports the manifest itself
    if (auto field = differs(g, (*m)->generation); !field.empty()) {
      problems.push_back("generation " + std::to_string(g.id) + ": the index's " + field + " differs from its manifest" +
                         kRebuild);
      continue;
    }
    for (const auto& d : g.devices) {
      if (!d.complete) continue;
      auto img = impl.device_image_locked(g.id, d.name);
      if (!img) continue;  // a chunk in no pack: verify reports it as damage
      // The map from the manifests, from the device's previous map when that is its parent.
      ChunkMap expect;
      auto prev = last.find(d.name);
      const auto mi = static_cast<size_t>(&d - g.devices.data());
      if (d.parent && prev != last.end() && prev->second.first == *d.parent) {
        expect = std::move(prev->second.second);
        const uint64_t count = (d.size_bytes + impl.config.chunk_size - 1) / impl.config.chunk_size;
        expect.erase(expect.lower_bound(count), expect.end());
        for (const auto& e : (*m)->deltas[mi]) {
          if (e.id) {
            expect[e.chunk_index] = *e.id;
          } else {
            expect.erase(e.chunk_index);
          }
        }
      } else {
        auto built = manifests.map_of(g.id, d.name);
        if (!built) {
          problems.push_back("generation " + std::to_string(g.id) + " device " + d.name + ": " + built.error().message());
          continue;
        }
        expect = std::move(built->first);
      }
      if (auto at = first_difference(*img, expect)) {
        problems.push_back("generation " + std::to_string(g.id) + " device " + d.name + ": the index's chunk map differs "
                           "from the manifests at bytes " + std::to_string(*at * impl.config.chunk_size) + "-" +
                           std::to_string((*at + 1) * impl.config.chunk_size - 1) + kRebuild);
      }
      last[d.name] = {g.id, std::move(expect)};
    }
  }
  return {};
}

Status check_image_against_manifests(Repository::Impl& impl, const DeviceImage& image) {
  Manifests manifests(impl);
  auto built = manifests.map_of(image.generation, image.device);
  if (!built) return {};  // no readable manifests: the index is the only record (verify says so)
  const std::string where = image.device + " in generation " + std::to_string(image.generation);
  if (built->second != image.size_bytes) {
    return fail(ErrorCode::kCorrupt, "the index gives " + where + " " + std::to_string(image.size_bytes) +
                                         " bytes, its manifest " + std::to_string(built->second) + kRebuild);
  }
  if (auto at = first_difference(image, built->first)) {
    return fail(ErrorCode::kCorrupt, "the index's chunk map of " + where + " differs from the manifests at bytes " +
                                         std::to_string(*at * image.chunk_size) + "-" +
                                         std::to_string((*at + 1) * image.chunk_size - 1) + kRebuild);
  }
  return {};
}

}  // namespace blkvault::repo
