#include "kernel/module.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "kernel/ioctl_module.h"
#include "kernel/sim_module.h"

namespace blkvault::kernel {

std::string to_string(DevId id) { return std::to_string(id.major) + ":" + std::to_string(id.minor); }

std::string to_string(const Uuid& id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[id[i] >> 4];
    out += kHex[id[i] & 0xf];
  }
  return out;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<Uuid> parse_uuid(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  Uuid id{};
  size_t byte = 0;
  for (size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    int hi = hex_value(text[i]);
    int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id[byte++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return id;
}

std::string to_string(const Version& v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor) + "." + std::to_string(v.revision) + "." +
         std::to_string(v.build);
}

Error module_error(std::string_view operation, std::string_view subject, int err) {
  ErrorCode code = ErrorCode::kModule;
  switch (err) {
    case ESRCH: code = ErrorCode::kNotFound; break;
    case ENODEV:
      if (operation == "SNAPSHOT_DESTROY" || operation == "TRACKER_MARK_DIRTY_BLOCKS" ||
          operation == "SNAPSHOT_CREATE")
        code = ErrorCode::kNotFound;
      break;
    case ENODATA:
      if (operation == "TRACKER_REMOVE" || operation == "TRACKER_READ_CBT_MAP") code = ErrorCode::kNotFound;
      break;
    case ENOENT:
    case ENXIO:
      if (operation == "SNAPSHOT_CREATE") code = ErrorCode::kNotFound;
      break;
    case EBUSY: code = ErrorCode::kBusy; break;
    case EALREADY:
      if (operation == "SNAPSHOT_CREATE") code = ErrorCode::kBusy;
      break;
    case EACCES: code = ErrorCode::kPermission; break;
    default: break;
  }
  std::string message(operation);
  if (!subject.empty()) {
    message += " of ";
    message += subject;
  }
  message += ": ";
  message += std::strerror(err);
  return Error(code, std::move(message), err);
}

std::string device_subject(DevId dev) { return "device " + to_string(dev); }
std::string snapshot_subject(const Uuid& id) { return "snapshot " + to_string(id); }

Status check_module_version(Module& module, std::string_view where) {
  BLKVAULT_TRY_ASSIGN(Version v, module.version());
  if (v.major != 6 || v.minor != 3) {
    return fail(ErrorCode::kModule, "veeamblksnap at " + std::string(where) + " is version " + to_string(v) +
                                        ", blkvault needs the 6.3 ABI");
  }
  return {};
}

Result<std::unique_ptr<Module>> open_module(const std::string& spec) {
  std::unique_ptr<Module> module;
  if (spec.starts_with("sim:")) {
    BLKVAULT_TRY_ASSIGN(auto sim, SimModule::open(spec.substr(4)));
    module = std::move(sim);
  } else {
    BLKVAULT_TRY_ASSIGN(module, IoctlModule::open(spec));
  }
  BLKVAULT_TRY(check_module_version(*module, spec));
  return module;
}

}  // namespace blkvault::kernel
