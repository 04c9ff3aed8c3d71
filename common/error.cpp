#include "common/error.h"

#include <cstring>

namespace blkvault {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kNoSpace: return "no_space";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kLocked: return "locked";
    case ErrorCode::kPermission: return "permission";
    case ErrorCode::kModule: return "module";
    case ErrorCode::kBusy: return "busy";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kKey: return "key";
    case ErrorCode::kCbtAudit: return "cbt_audit";
  }
  return "unknown";
}

Error Error::from_errno(std::string_view what, int err) {
  ErrorCode code = ErrorCode::kIo;
  switch (err) {
    case ENOSPC:
    case EDQUOT: code = ErrorCode::kNoSpace; break;
    case EACCES:
    case EPERM:
    case EROFS: code = ErrorCode::kPermission; break;
    case ENOENT:
    case ENODEV:
    case ENXIO: code = ErrorCode::kNotFound; break;
    case EBUSY: code = ErrorCode::kBusy; break;
    case EINTR: code = ErrorCode::kCancelled; break;
    default: break;
  }
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Error(code, std::move(msg), err);
}

}  // namespace blkvault
