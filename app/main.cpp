// blkvault entry point: everything happens in run_cli(); this file only guards
// against an escaped exception so the user still gets one line and an exit code.
#include <cstdio>
#include <exception>

#include "app/cli.h"

int main(int argc, char** argv) {
  try {
    return blkvault::app::run_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "blkvault: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "blkvault: internal error: unknown exception\n");
  }
  return blkvault::app::kExitInternal;
}
