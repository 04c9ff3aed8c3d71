#include "app/restore_lookup.h"

#include <vector>

#include <fmt/format.h>

namespace blkvault::app {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ", ") + i;
  return s;
}

}  // namespace

Result<repo::GenerationId> resolve_committed(repo::Repository& repository, const std::string& spec) {
  auto id = repository.resolve(spec);
  if (id) return *id;
  Error e = std::move(id).error();
  if (e.code() != ErrorCode::kNotFound) return fail(std::move(e));
  BLKVAULT_TRY_ASSIGN(auto all, repository.generations());
  std::vector<std::string> ids;
  for (const auto& g : all) {
    if (g.state == repo::GenerationState::kComplete || g.state == repo::GenerationState::kPartial) {
      ids.push_back(std::to_string(g.id));
    }
  }
  if (ids.empty()) return fail(ErrorCode::kNotFound, "the repository has no backup yet");
  return fail(ErrorCode::kNotFound, fmt::format("{} (the repository has: {})", e.message(), join(ids)));
}

Result<repo::DeviceImage> find_device_image(repo::Repository& repository, repo::GenerationId id,
                                            const std::string& device) {
  auto image = repository.device_image(id, device);
  if (image) return std::move(*image);
  Error e = std::move(image).error();
  if (e.code() != ErrorCode::kNotFound) return fail(std::move(e));  // e.g. "device X failed in generation N"
  BLKVAULT_TRY_ASSIGN(repo::GenerationInfo info, repository.generation(id));
  std::vector<std::string> names;
  for (const auto& d : info.devices) names.push_back(d.name + (d.complete ? "" : " (failed)"));
  return fail(ErrorCode::kNotFound, fmt::format("generation {} has no device {} (it has: {})", id, device, join(names)));
}

}  // namespace blkvault::app
