// app/hook_runner.h — runs a job's hook or notification command (docs/CONFIG.md,
// [job.NAME.hooks] and report.on-failure) under a time limit, with its output
// captured for the job's log.
//
// The command runs in its own process group, with stdin from the given text
// (or /dev/null), stdout and stderr both captured, and the environment of
// blkvault plus `env` minus the repository's secrets (BLKVAULT_PASSWORD,
// BLKVAULT_NEW_PASSWORD): a hook has no business with the passphrase. When the
// time limit passes, or the cancel token is set, the whole group gets SIGTERM
// and, 5 s later, SIGKILL; so a shell hook's children die with it. Output
// still held open by a child that escaped the group is not waited for once
// the command itself has exited.
//
// Thread-safety: stateless; call from one thread per command.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/cancel.h"
#include "common/error.h"

namespace blkvault::app {

struct HookCommand {
  std::vector<std::string> argv;  // run directly, argv[0] looked up in PATH
  std::string shell;              // else run by /bin/sh -c
  // How the command reads in a message: ["a", "b"] or "cmd args".
  std::string describe() const;
};

struct HookRun {
  std::vector<std::string> env;     // "KEY=VALUE" added to (or replacing in) the environment
  std::string stdin_text;           // empty: stdin is /dev/null
  uint64_t timeout_ms = 300'000;    // > 0
  const CancelToken* cancel = nullptr;
};

struct HookResult {
  int exit_status = 0;      // exit code, or 128 + signal number when killed
  bool timed_out = false;   // killed because the time limit passed
  bool cancelled = false;   // killed because the cancel token was set
  std::string output;       // stdout and stderr interleaved, at most 1 MiB kept
  double seconds = 0;
  uint64_t timeout_ms = 0;  // the limit it ran under
  bool ok() const { return exit_status == 0 && !timed_out && !cancelled; }
  // "exited with status 3", "was killed after its timeout of 2s", ...
  std::string outcome() const;
};

// Fails only when the command cannot be started (kNotFound for a program not
// in PATH, else kIo); how it ended is in the result.
Result<HookResult> run_hook(const HookCommand& command, const HookRun& how);

}  // namespace blkvault::app
