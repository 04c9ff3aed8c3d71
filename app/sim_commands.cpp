#include "app/sim_commands.h"

#include <unistd.h>

#include <fstream>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernel/sim_module.h"

namespace blkvault::app {

void SimCommands::add_to(CLI::App& cli) {
  sim_ = cli.add_subcommand("sim", "Drive the simulated kernel module (--module sim:DIR)");
  sim_->require_subcommand(1);
  write_ = sim_->add_subcommand("write", "Write stdin to DEVICE at --offset through the tracked path");
  write_->add_option("device", device_, "Device (image file) known to the simulation")->required();
  offset_option_ = write_->add_option("--offset", offset_, "Byte offset (or --extents)");
  auto* length = write_->add_option("--length", length_, "Bytes to take from stdin (default: all of it)");
  auto* extents = write_->add_option("--extents", extents_file_,
                                     "Batch: FILE of OFFSET:LENGTH lines; stdin holds each extent's bytes in turn");
  extents->excludes(offset_option_)->excludes(length);
  show_ = sim_->add_subcommand("show", "Show trackers and snapshots of the simulated module");
  drop_ = sim_->add_subcommand("drop-state", "Simulate a module reload: every tracker and snapshot vanishes");
  outside_ = sim_->add_subcommand(
      "outside-writes",
      "Whether DEVICE may be written outside `sim write` (dd, a loop mount): detect (default: fingerprints, "
      "rescanned at each snapshot) or none (every write goes through `sim write`, as the kernel sees every write: "
      "snapshots read nothing; an outside write is then missed)");
  outside_->add_option("device", device_, "Device (image file or block device)")->required();
  outside_->add_option("mode", outside_mode_, "detect or none")
      ->required()
      ->check(CLI::IsMember({"detect", "none"}));
  fault_ = sim_->add_subcommand("fault", "Inject faults into the simulated module (for tests)");
  fault_->add_option("--storage-limit", fault_storage_limit_,
                     "Cap the difference storage at this many bytes (forces an overflow)");
  fault_->add_option("--read-error", fault_read_error_, "OFFSET:LENGTH of DEVICE's image that fails with EIO");
  fault_->add_flag("--lose-next-write", fault_lose_write_, "The next write to DEVICE is not recorded in its CBT map");
  fault_->add_option("--lose-writes", fault_lose_range_,
                     "OFFSET:LENGTH of DEVICE whose writes are not recorded in its CBT map, until --clear");
  fault_->add_option("--device", device_, "Device the fault applies to");
  fault_->add_flag("--clear", fault_clear_, "Remove every injected fault");
}

namespace {

Result<std::unique_ptr<kernel::SimModule>> open_sim(const Context& ctx) {
  if (ctx.module_spec.rfind("sim:", 0) != 0 || ctx.module_spec.size() <= 4) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("sim commands need --module sim:DIR (got '{}')", ctx.module_spec));
  }
  return kernel::SimModule::open(ctx.module_spec.substr(4));
}

Result<std::string> read_stdin(std::optional<uint64_t> limit) {
  std::string data;
  char buf[1 << 16];
  while (!limit || data.size() < *limit) {
    size_t want = sizeof buf;
    if (limit) want = std::min<uint64_t>(want, *limit - data.size());
    ssize_t n = ::read(STDIN_FILENO, buf, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("reading stdin");
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  if (limit && data.size() < *limit) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("stdin ended after {} of the {} bytes of --length", data.size(), *limit));
  }
  return data;
}

// One line of an --extents file: OFFSET:LENGTH (sizes as parse_size reads them).
Result<std::pair<uint64_t, uint64_t>> parse_extent(const std::string& file, size_t line_no, const std::string& line) {
  auto colon = line.find(':');
  auto bad = [&](const std::string& why) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("{}:{}: '{}': {}", file, line_no, line, why));
  };
  if (colon == std::string::npos) return bad("expected OFFSET:LENGTH");
  auto off = parse_size(line.substr(0, colon));
  auto len = parse_size(line.substr(colon + 1));
  if (!off || !len) return bad("expected OFFSET:LENGTH");
  return std::pair{*off, *len};
}

// Batch mode: every extent is one tracked write, exactly as if `sim write
// --offset OFFSET --length LENGTH` had run once per line, in file order, without
// a process per extent.
Result<uint64_t> write_extents(kernel::SimModule& sim, const std::string& device, const std::string& file) {
  std::ifstream in(file);
  if (!in) return fail_errno(fmt::format("opening extents file {}", file));
  std::vector<std::pair<uint64_t, uint64_t>> extents;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty() || line[0] == '#') continue;
    BLKVAULT_TRY_ASSIGN(auto ext, parse_extent(file, line_no, line));
    extents.push_back(ext);
  }
  uint64_t total = 0;
  for (const auto& [offset, length] : extents) {
    BLKVAULT_TRY_ASSIGN(std::string data, read_stdin(length));
    BLKVAULT_TRY(sim.write(device, offset, {reinterpret_cast<const uint8_t*>(data.data()), data.size()}));
    total += length;
  }
  return total;
}

}  // namespace

Status SimCommands::run(Context& ctx) {
  BLKVAULT_TRY_ASSIGN(auto sim, open_sim(ctx));
  if (write_->parsed() && !extents_file_.empty()) {
    BLKVAULT_TRY_ASSIGN(uint64_t total, write_extents(*sim, device_, extents_file_));
    ctx.out.note(fmt::format("wrote {} bytes to {} through the simulated tracker (extents from {})", total, device_,
                             extents_file_));
    return {};
  }
  if (write_->parsed()) {
    if (offset_option_->count() == 0) return fail(ErrorCode::kInvalidArgument, "sim write needs --offset or --extents");
    BLKVAULT_TRY_ASSIGN(std::string data, read_stdin(length_));
    BLKVAULT_TRY(sim->write(device_, offset_, {reinterpret_cast<const uint8_t*>(data.data()), data.size()}));
    ctx.out.note(fmt::format("wrote {} bytes to {} at offset {} through the simulated tracker", data.size(), device_, offset_));
    return {};
  }
  if (outside_->parsed()) {
    const bool detect = outside_mode_ == "detect";
    BLKVAULT_TRY(sim->set_outside_writes(device_, detect));
    ctx.out.note(detect ? fmt::format("{}: writes outside `sim write` are detected (fingerprints, rescanned at take)",
                                      device_)
                        : fmt::format("{}: declared written only through `sim write`: takes read nothing, outside "
                                      "writes go unseen",
                                      device_));
    return {};
  }
  if (drop_->parsed()) {
    BLKVAULT_TRY(sim->drop_state());
    ctx.out.note("simulated module reload: trackers and snapshots dropped");
    return {};
  }
  if (fault_->parsed()) {
    if (fault_clear_) BLKVAULT_TRY(sim->clear_faults());
    if (!fault_storage_limit_.empty()) {
      BLKVAULT_TRY_ASSIGN(uint64_t bytes, parse_size(fault_storage_limit_));
      BLKVAULT_TRY(sim->set_storage_limit(bytes / kernel::kSectorSize));
    }
    if (!fault_read_error_.empty() || fault_lose_write_ || !fault_lose_range_.empty()) {
      if (device_.empty()) return fail(ErrorCode::kInvalidArgument, "this fault needs --device");
      BLKVAULT_TRY_ASSIGN(kernel::DevId dev, sim->device_id(device_));
      if (!fault_read_error_.empty()) {
        auto colon = fault_read_error_.find(':');
        if (colon == std::string::npos) {
          return fail(ErrorCode::kInvalidArgument, fmt::format("--read-error '{}': expected OFFSET:LENGTH", fault_read_error_));
        }
        BLKVAULT_TRY_ASSIGN(uint64_t off, parse_size(fault_read_error_.substr(0, colon)));
        BLKVAULT_TRY_ASSIGN(uint64_t len, parse_size(fault_read_error_.substr(colon + 1)));
        BLKVAULT_TRY(sim->inject_read_error(dev, off, len));
      }
      if (fault_lose_write_) BLKVAULT_TRY(sim->lose_next_write(dev));
      if (!fault_lose_range_.empty()) {
        auto colon = fault_lose_range_.find(':');
        if (colon == std::string::npos) {
          return fail(ErrorCode::kInvalidArgument, fmt::format("--lose-writes '{}': expected OFFSET:LENGTH", fault_lose_range_));
        }
        BLKVAULT_TRY_ASSIGN(uint64_t off, parse_size(fault_lose_range_.substr(0, colon)));
        BLKVAULT_TRY_ASSIGN(uint64_t len, parse_size(fault_lose_range_.substr(colon + 1)));
        BLKVAULT_TRY(sim->lose_writes_in(dev, off, len));
      }
    }
    return {};
  }
  // show
  BLKVAULT_TRY_ASSIGN(kernel::SimView view, sim->inspect());
  nlohmann::json j;
  j["trackers"] = nlohmann::json::array();
  std::string text = fmt::format("{}\ntrackers:\n", sim->description());
  for (const auto& t : view.trackers) {
    j["trackers"].push_back({{"device", t.path},
                             {"dev_id", kernel::to_string(t.info.dev)},
                             {"generation_id", kernel::to_string(t.info.generation_id)},
                             {"snap_number", t.info.snap_number},
                             {"block_size_bytes", t.info.block_size_bytes},
                             {"block_count", t.info.block_count},
                             {"capacity_bytes", t.info.capacity_bytes}});
    text += fmt::format("  {} ({}): generation {}, snap number {}, {} blocks of {} bytes\n", t.path,
                        kernel::to_string(t.info.dev), kernel::to_string(t.info.generation_id), t.info.snap_number,
                        t.info.block_count, t.info.block_size_bytes);
  }
  if (view.trackers.empty()) text += "  (none)\n";
  text += "snapshots:\n";
  j["snapshots"] = nlohmann::json::array();
  for (const auto& s : view.snapshots) {
    j["snapshots"].push_back({{"id", kernel::to_string(s.id)},
                              {"taken", s.taken},
                              {"devices", s.devices.size()},
                              {"capacity_sectors", s.capacity_sectors},
                              {"filled_sectors", s.filled_sectors},
                              {"overflow", s.overflow}});
    text += fmt::format("  {}: {}, {} device(s), diff storage {} of {} sectors used{}\n", kernel::to_string(s.id),
                        s.taken ? "taken" : "created", s.devices.size(), s.filled_sectors, s.capacity_sectors,
                        s.overflow ? ", OVERFLOWED" : "");
  }
  if (view.snapshots.empty()) text += "  (none)\n";
  j["outside_writes_none"] = view.sim_writes_only;
  for (const auto& p : view.sim_writes_only) text += fmt::format("written only through `sim write`: {}\n", p);
  ctx.out.result(text);
  ctx.out.result_json(j);
  return {};
}

}  // namespace blkvault::app
