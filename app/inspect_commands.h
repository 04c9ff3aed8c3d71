// app/inspect_commands.h — the commands that look at (and tidy) what exists:
// `list`, `verify`, `status`, `cleanup` and `index rebuild` (the pattern of
// SimCommands: register on the CLI, then run whichever was given).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"

namespace blkvault::app {

class InspectCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const;
  Status run(Context& ctx);

 private:
  CLI::App* list_ = nullptr;
  CLI::App* verify_ = nullptr;
  CLI::App* status_ = nullptr;
  CLI::App* cleanup_ = nullptr;
  CLI::App* index_ = nullptr;
  CLI::App* index_rebuild_ = nullptr;
  ListOptions list_opts_;
  VerifyOptions verify_opts_;
  StatusOptions status_opts_;
};

Status cmd_index_rebuild(Context& ctx);

}  // namespace blkvault::app
