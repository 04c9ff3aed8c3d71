#include "app/cli.h"

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

namespace blkvault::app {

int run_cli(int argc, char** argv) {
  CLI::App cli{"blkvault — incremental block-level backup through veeamblksnap"};
  cli.require_subcommand(1);
  cli.add_subcommand("version", "Print the version")->callback([] { std::printf("blkvault %s\n", BLKVAULT_VERSION); });
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "blkvault: %s\n", e.what());
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace blkvault::app
