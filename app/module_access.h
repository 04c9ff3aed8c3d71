// app/module_access.h — opening the kernel module for a command that takes
// snapshots, with the errors a user can act on: a missing or wrong-version module
// says how to load it or to use --module sim:DIR; a real module without root
// says root is needed. Both are kModule (exit status 5).
// Thread-safety: stateless.
#pragma once

#include <memory>
#include <string_view>

#include "app/commands.h"
#include "kernel/module.h"

namespace blkvault::app {

bool is_sim_module(std::string_view spec);

Result<std::unique_ptr<kernel::Module>> open_module_for_snapshots(const Context& ctx);

}  // namespace blkvault::app
