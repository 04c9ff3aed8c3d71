// tests/app/cli_support.h — run the real blkvault executable and capture what a
// user would see: exit status, stdout, stderr.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "temp_dir.h"

namespace blkvault::test {

struct CliRun {
  int exit_status = -1;
  std::string out;
  std::string err;
};

// Runs BLKVAULT_BINARY with args. `stdin_path` (optional) is redirected to stdin.
// Extra environment entries "K=V" are added; BLKVAULT_REPO/BLKVAULT_MODULE are
// cleared unless given.
// `host_name`: run it in its own UTS namespace under that host name, as if on
// another machine (root only; exit status 126 when that cannot be had).
CliRun run_blkvault(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                    const std::string& stdin_path = "", const std::string& host_name = "");

// Writes `size` bytes of deterministic data (seeded) to a new file.
void write_random_file(const std::string& path, uint64_t size, uint64_t seed);
std::string read_whole(const std::string& path);

}  // namespace blkvault::test
