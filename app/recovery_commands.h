// app/recovery_commands.h — `blkvault diff` (what changed between two
// generations, from the index alone) and `blkvault mount` (generations as a
// read-only FUSE filesystem, app/cmd_mount.cpp). Registers on the CLI and runs
// whichever was given (the pattern of SimCommands).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"

namespace blkvault::app {

struct DiffOptions {
  std::string from;    // GEN_A: an id or "latest"
  std::string to;      // GEN_B
  std::string device;  // empty: every device of either generation
};
Status cmd_diff(Context& ctx, const DiffOptions& opts);

struct MountOptions {
  std::string generation;  // empty: every committed generation, a folder each
  std::string mountpoint;
  std::string cache_size;  // empty: MountReader::kDefaultCacheBytes
};
Status cmd_mount(Context& ctx, const MountOptions& opts);

class RecoveryCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const;
  Status run(Context& ctx);

 private:
  CLI::App* diff_ = nullptr;
  CLI::App* mount_ = nullptr;
  DiffOptions diff_opts_;
  MountOptions mount_opts_;
};

}  // namespace blkvault::app
