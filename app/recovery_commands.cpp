#include "app/recovery_commands.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/repo_access.h"
#include "repo/diff.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

using nlohmann::json;

Result<repo::GenerationInfo> resolve_info(repo::Repository& repository, const std::string& spec) {
  auto id = repository.resolve(spec);
  if (!id) return fail(std::move(id).error().wrap("diff"));
  return repository.generation(*id);
}

// A complete device of `g`, or null.
const repo::DeviceRecord* usable(const repo::GenerationInfo& g, const std::string& name) {
  const auto* d = g.device(name);
  return d != nullptr && d->complete ? d : nullptr;
}

}  // namespace

Status cmd_diff(Context& ctx, const DiffOptions& opts) {
  BLKVAULT_TRY_ASSIGN(auto repository, open_repository(ctx, /*write=*/false));
  BLKVAULT_TRY_ASSIGN(repo::GenerationInfo a, resolve_info(*repository, opts.from));
  BLKVAULT_TRY_ASSIGN(repo::GenerationInfo b, resolve_info(*repository, opts.to));

  std::vector<std::string> names;
  if (!opts.device.empty()) {
    if (a.device(opts.device) == nullptr && b.device(opts.device) == nullptr) {
      return fail(ErrorCode::kNotFound,
                  fmt::format("diff: neither generation {} nor {} has device {}", a.id, b.id, opts.device));
    }
    names.push_back(opts.device);
  } else {
    for (const auto* g : {&a, &b}) {
      for (const auto& d : g->devices) {
        if (std::find(names.begin(), names.end(), d.name) == names.end()) names.push_back(d.name);
      }
    }
  }

  std::string text;
  json devices = json::array();
  for (const auto& name : names) {
    const auto* da = usable(a, name);
    const auto* db = usable(b, name);
    if (da == nullptr || db == nullptr) {
      // Not comparable: present (or complete) in only one of the two.
      auto state = [&](const repo::GenerationInfo& g) -> std::string {
        const auto* d = g.device(name);
        if (d == nullptr) return "absent";
        return d->complete ? "present" : "failed";
      };
      const std::string why = fmt::format("in generation {}: {}, in generation {}: {}", a.id, state(a), b.id, state(b));
      if (!opts.device.empty()) {
        return fail(ErrorCode::kNotFound, fmt::format("diff: {} cannot be compared ({})", name, why));
      }
      text += fmt::format("{}: not compared ({})\n", name, why);
      devices.push_back({{"name", name}, {"compared", false}, {"why", why}});
      continue;
    }
    BLKVAULT_TRY_ASSIGN(repo::DeviceDiff d, repository->diff(a.id, b.id, name));
    text += fmt::format("{}: {} changed in {} range{} ({} chunk{} of {}){}\n", name, format_bytes(d.changed_bytes),
                        d.ranges.size(), d.ranges.size() == 1 ? "" : "s", d.changed_chunks,
                        d.changed_chunks == 1 ? "" : "s", format_bytes(d.chunk_size),
                        d.resized() ? fmt::format("; size {} -> {}", d.from_size_bytes, d.to_size_bytes) : "");
    json ranges = json::array();
    for (const auto& r : d.ranges) {
      text += fmt::format("  {}..{}  {}\n", r.offset_bytes, r.offset_bytes + r.length_bytes,
                          format_bytes(r.length_bytes));
      ranges.push_back({{"offset_bytes", r.offset_bytes}, {"length_bytes", r.length_bytes}});
    }
    devices.push_back({{"name", name},
                       {"compared", true},
                       {"from_size_bytes", d.from_size_bytes},
                       {"to_size_bytes", d.to_size_bytes},
                       {"changed_bytes", d.changed_bytes},
                       {"changed_chunks", d.changed_chunks},
                       {"ranges", ranges}});
  }
  ctx.out.result(fmt::format("generation {} -> {} (chunk size {})\n{}", a.id, b.id,
                             format_bytes(repository->config().chunk_size), text));
  ctx.out.result_json({{"from", a.id},
                       {"to", b.id},
                       {"chunk_size", repository->config().chunk_size},
                       {"devices", devices}});
  return {};
}

void RecoveryCommands::add_to(CLI::App& cli) {
  diff_ = cli.add_subcommand("diff", "Changed byte ranges between two generations, from the index alone");
  diff_->add_option("from", diff_opts_.from, "First generation (id or 'latest')")->required();
  diff_->add_option("to", diff_opts_.to, "Second generation (id or 'latest')")->required();
  diff_->add_option("--device,-d", diff_opts_.device, "Only this device (as named at backup)");
  mount_ = cli.add_subcommand("mount", "Serve generations as a read-only filesystem of device images (FUSE) until "
                                       "Ctrl-C or fusermount3 -u");
  mount_->add_option("--generation,-g", mount_opts_.generation,
                     "One generation (id or 'latest'): its images at the top; default: a folder per generation");
  mount_->add_option("--cache-size", mount_opts_.cache_size,
                     "Decompressed chunks kept in memory (default 64M; at least 4 chunks)");
  mount_->add_option("mountpoint", mount_opts_.mountpoint, "An empty directory")->required();
}

bool RecoveryCommands::parsed() const {
  return (diff_ != nullptr && diff_->parsed()) || (mount_ != nullptr && mount_->parsed());
}

Status RecoveryCommands::run(Context& ctx) {
  if (diff_->parsed()) return cmd_diff(ctx, diff_opts_);
  if (mount_->parsed()) return cmd_mount(ctx, mount_opts_);
  return {};
}

}  // namespace blkvault::app
