// app/key_commands.h — `blkvault key list|add|remove|passwd|export|import`:
// the passphrases (key files) of an encrypted repository and the paper backup
// of its master key (docs/SECURITY.md). The pattern of SimCommands.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "app/commands.h"

namespace blkvault::app {

class KeyCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const;
  Status run(Context& ctx);

 private:
  CLI::App* key_ = nullptr;
  CLI::App* list_ = nullptr;
  CLI::App* add_ = nullptr;
  CLI::App* remove_ = nullptr;
  CLI::App* passwd_ = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* import_ = nullptr;
  std::string new_password_file_;
  std::string remove_id_;
  std::string paper_file_;
  uint64_t kdf_ops_ = 3;
  std::string kdf_mem_ = "64M";
};

}  // namespace blkvault::app
