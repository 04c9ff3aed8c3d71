// common/crash_point.h — deterministic kill points for the crash tests.
//
// Every durable step (a file published, a file removed, an index commit, a
// snapshot created, taken or destroyed) calls crash_point("what"). Normally it
// does nothing. With BLKVAULT_CRASH_AT=N in the environment, the process kills
// itself with SIGKILL at its N-th crash point (1-based), the same as a power cut
// or `kill -9` just before that step. With BLKVAULT_CRASH_TRACE=FILE, each point
// reached is appended to FILE ("<n> <what>"), so a harness can count them.
// With BLKVAULT_CRASH_AFTER_MS=N, it kills itself N ms after it started,
// wherever it is then.
// Thread-safe (one atomic counter).
#pragma once

#include <string_view>

namespace blkvault {

void crash_point(std::string_view what);

}  // namespace blkvault
