// app/core_commands.h — registers `init`, `backup`, `restore` and `demo` on the
// command line and runs whichever was given (the pattern of SimCommands).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"

namespace blkvault::app {

class CoreCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const;
  // `self_exe` is this executable (the demo runs it for every step).
  Status run(Context& ctx, const std::string& self_exe);

 private:
  CLI::App* init_ = nullptr;
  CLI::App* backup_ = nullptr;
  CLI::App* restore_ = nullptr;
  CLI::App* demo_ = nullptr;
  InitOptions init_opts_;
  BackupOptions backup_opts_;
  std::string cbt_audit_;       // --cbt-audit text, checked by parse_cbt_audit_percent
  std::string cbt_audit_seed_;  // --cbt-audit-seed text
  CLI::Option* cbt_audit_option_ = nullptr;
  CLI::Option* cbt_audit_seed_option_ = nullptr;
  RestoreOptions restore_opts_;
  DemoOptions demo_opts_;
};

}  // namespace blkvault::app
