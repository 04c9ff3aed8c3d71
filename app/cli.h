// app/cli.h — the command line: parses arguments, runs one command, prints its
// result and returns the process exit status (app/exit_codes.h).
#pragma once

#include "app/exit_codes.h"

namespace blkvault::app {

int run_cli(int argc, char** argv);

}  // namespace blkvault::app
