#include "app/module_access.h"

#include <unistd.h>

#include <fmt/format.h>

namespace blkvault::app {

bool is_sim_module(std::string_view spec) { return spec.starts_with("sim:"); }

Result<std::unique_ptr<kernel::Module>> open_module_for_snapshots(const Context& ctx) {
  if (is_sim_module(ctx.module_spec) && ctx.module_spec.size() == 4) {
    return fail(ErrorCode::kInvalidArgument, "--module sim:DIR needs a directory after 'sim:'");
  }
  auto module = kernel::open_module(ctx.module_spec);
  if (!module) {
    Error e = std::move(module).error();
    // Missing, wrong version, or not root (the messages say which and what to do).
    if (e.code() == ErrorCode::kModule || e.code() == ErrorCode::kNotFound || e.code() == ErrorCode::kPermission) {
      return fail(std::move(e).with_code(ErrorCode::kModule));
    }
    return fail(std::move(e).wrap("opening kernel module " + ctx.module_spec));
  }
  if (!is_sim_module(ctx.module_spec) && ::geteuid() != 0) {
    return fail(ErrorCode::kModule, fmt::format("{}: snapshots of block devices need root (run blkvault as root, or "
                                                "try the simulation with --module sim:DIR)",
                                                ctx.module_spec));
  }
  return std::move(*module);
}

}  // namespace blkvault::app
