// app/sim_commands.h — `blkvault sim …`: drive the simulated kernel module
// (kernel/sim_module.h) from the shell: write through the tracked path, show
// trackers and snapshots, simulate a module reload, inject faults, declare a
// device written only through the simulation.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"

namespace blkvault::app {

class SimCommands {
 public:
  // Registers `sim` and its subcommands on `cli`.
  void add_to(CLI::App& cli);
  bool parsed() const { return sim_ != nullptr && sim_->parsed(); }
  Status run(Context& ctx);

 private:
  CLI::App* sim_ = nullptr;
  CLI::App* write_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* drop_ = nullptr;
  CLI::App* fault_ = nullptr;
  CLI::App* outside_ = nullptr;
  std::string outside_mode_;  // detect | none
  CLI::Option* offset_option_ = nullptr;
  std::string device_;
  uint64_t offset_ = 0;
  std::optional<uint64_t> length_;
  std::string extents_file_;  // batch mode: OFFSET:LENGTH lines
  std::string fault_storage_limit_;
  std::string fault_read_error_;  // OFFSET:LENGTH
  bool fault_lose_write_ = false;
  std::string fault_lose_range_;  // OFFSET:LENGTH
  bool fault_clear_ = false;
};

}  // namespace blkvault::app
