// app/config_commands.h — `blkvault config check [--config FILE]`: validate the
// job configuration file (config/job_config.h) and print every problem, or a
// summary of the jobs (the parsed configuration with --json).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "config/job_config.h"

namespace blkvault::app {

class ConfigCommands {
 public:
  // Registers `config` and its subcommands on `cli`.
  void add_to(CLI::App& cli);
  bool parsed() const { return config_ != nullptr && config_->parsed(); }
  // Problems are printed to stderr one per line, then the returned
  // kInvalidArgument error "config FILE: N problems" becomes the last line.
  Status run(Context& ctx);

 private:
  CLI::App* config_ = nullptr;
  CLI::App* check_ = nullptr;
  std::string file_{config::kDefaultConfigPath};
};

}  // namespace blkvault::app
