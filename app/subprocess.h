// app/subprocess.h — run a program with an argument vector (never through a
// shell string), optionally capturing its stdout.
//
// Thread-safety: stateless; safe to call from any thread.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"

namespace blkvault::app {

struct ProcessResult {
  int exit_status = 0;   // exit code, or 128 + signal number when killed
  std::string stdout_text;  // only with capture_stdout
};

// Runs argv[0] (looked up in PATH) with argv, waits for it. stderr is inherited.
// Fails only when the program cannot be started; a non-zero exit is a result.
Result<ProcessResult> run_process(const std::vector<std::string>& argv, bool capture_stdout = false,
                                  bool quiet_stdout = false);

// True when `program` is found in PATH (or is an executable path).
bool program_available(const std::string& program);

}  // namespace blkvault::app
