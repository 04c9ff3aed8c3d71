// app/maintenance_commands.h — `prune` (remove generations by keep rules) and
// `gc` (reclaim the space nothing references), the pattern of SimCommands.
#pragma once

#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "repo/retention.h"

namespace blkvault::app {

struct PruneOptions {
  repo::RetentionPolicy policy;
  bool dry_run = false;
  bool gc = false;  // run gc right after
  repo::Repository* repository = nullptr;  // `blkvault run`: an open writer to use instead of opening ctx.repo
};
Status cmd_prune(Context& ctx, const PruneOptions& opts);

struct GcCommandOptions {
  bool dry_run = false;
};
Status cmd_gc(Context& ctx, const GcCommandOptions& opts);

class MaintenanceCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const;
  Status run(Context& ctx);

 private:
  CLI::App* prune_ = nullptr;
  CLI::App* gc_ = nullptr;
  PruneOptions prune_opts_;
  GcCommandOptions gc_opts_;
};

}  // namespace blkvault::app
