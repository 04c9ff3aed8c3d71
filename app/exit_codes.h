// app/exit_codes.h — the documented exit statuses (docs/CLI.md, `blkvault --help`).
#pragma once

#include "common/error.h"

namespace blkvault::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;        // the operation failed (I/O, no space, module refused)
inline constexpr int kExitUsage = 2;         // bad usage or input: option, device, generation id, config
inline constexpr int kExitDamage = 3;        // verify (or restore) found damaged data
inline constexpr int kExitLocked = 4;        // the repository is locked by another process
inline constexpr int kExitModule = 5;        // kernel module missing, wrong version, or no root
inline constexpr int kExitKey = 6;           // wrong passphrase, or the repository's key is missing
inline constexpr int kExitCbtAudit = 7;      // the backup committed, but the CBT audit found a write the CBT
                                             // map missed; the device was read fully
inline constexpr int kExitCancelled = 130;   // interrupted by SIGINT/SIGTERM
inline constexpr int kExitInternal = 70;     // a bug: an invariant broke (EX_SOFTWARE)

int exit_status_for(ErrorCode code);

}  // namespace blkvault::app
