#include "app/exit_codes.h"

namespace blkvault::app {

int exit_status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kUnsupported: return kExitUsage;
    case ErrorCode::kCorrupt: return kExitDamage;
    case ErrorCode::kLocked: return kExitLocked;
    case ErrorCode::kModule: return kExitModule;
    case ErrorCode::kCancelled: return kExitCancelled;
    case ErrorCode::kInternal: return kExitInternal;
    case ErrorCode::kKey: return kExitKey;
    case ErrorCode::kCbtAudit: return kExitCbtAudit;
    case ErrorCode::kIo:
    case ErrorCode::kNoSpace:
    case ErrorCode::kPermission:
    case ErrorCode::kBusy: return kExitFailed;
  }
  return kExitInternal;
}

}  // namespace blkvault::app
