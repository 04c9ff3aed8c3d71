// `blkvault restore --delta`: roll a target back to a generation by writing
// only the chunks that differ (repo/delta_restore.h).
//
// Two paths, and the result says which ran:
//   cbt      the target is the very device that was backed up, the module
//            tracks it, and its CBT is continuous since that generation's
//            snapshot (same CBT generation id, snap number advanced): only the
//            chunks the CBT marks as written since then are read and compared.
//            The map is read under a short snapshot that is released before
//            anything is written (the map is readable only while one is taken).
//   compare  everything else: every chunk of the target is read and hashed.
// Either way a chunk is written only when its hash differs from the image's.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <variant>

#include <fmt/format.h>

#include "app/commands.h"
#include "app/repo_access.h"
#include "app/restore_lookup.h"
#include "app/restore_target.h"
#include "cbt/changed_extents.h"
#include "kernel/module.h"
#include "repo/delta_restore.h"
#include "repo/repository.h"
#include "snapshot/session.h"

namespace blkvault::app {
namespace {

using Clock = std::chrono::steady_clock;

// The snapshot held only to read the map: nothing writes meanwhile, so a small
// difference storage is enough.
constexpr uint64_t kMapSnapshotStorage = 32ull << 20;

class TargetIo final : public repo::RestoreSink, public repo::RestoreSource {
 public:
  explicit TargetIo(RestoreTarget& target) : target_(target) {}
  Status write_at(uint64_t offset, std::span<const uint8_t> data) override { return target_.write_at(offset, data); }
  Status zero(uint64_t offset, uint64_t length) override { return target_.zero(offset, length); }
  Status read_at(uint64_t offset, std::span<uint8_t> data) override { return target_.read_at(offset, data); }
  bool reads_as_zeros(uint64_t offset, uint64_t length) override { return target_.is_hole(offset, length); }

 private:
  RestoreTarget& target_;
};

// What the CBT says may differ, or why it cannot be used.
struct CbtRanges {
  std::optional<std::vector<repo::ByteRange>> ranges;  // set: the CBT path
  std::string unused_reason;                           // otherwise: why not
  uint64_t changed_bytes = 0;                          // what the CBT marked
};

CbtRanges not_used(std::string why) { return CbtRanges{std::nullopt, std::move(why), 0}; }

// Errors of the module become reasons not to use the CBT (a restore onto a
// machine without the module is routine); only a failure to release the
// snapshot it took is returned as an error.
Result<CbtRanges> cbt_ranges(Context& ctx, const repo::DeviceRecord& record, repo::GenerationId generation,
                             const std::string& to, uint64_t chunk_size) {
  if (record.name != to) return not_used("the target is not the device that was backed up");
  if (record.baseline.empty()) return not_used(fmt::format("generation {} recorded no CBT baseline", generation));
  auto baseline = cbt::Baseline::decode(record.baseline);
  if (!baseline) return not_used(fmt::format("the baseline of generation {} is unreadable", generation));
  auto module = kernel::open_module(ctx.module_spec);
  if (!module) return not_used("no kernel module: " + module.error().message());
  auto dev = (*module)->device_id(to);
  if (!dev) return not_used(dev.error().message());
  auto tracked = (*module)->tracked_devices();
  if (!tracked) return not_used(tracked.error().message());
  if (std::none_of(tracked->begin(), tracked->end(), [&](const kernel::CbtInfo& i) { return i.dev == *dev; })) {
    return not_used(fmt::format("{} is not tracked by the module", to));
  }
  snapshot::SessionOptions so;
  so.diff_storage_dir = ctx.state_dir + "/diff";
  so.state_dir = ctx.state_dir;
  so.initial_bytes = so.limit_bytes = kMapSnapshotStorage;
  std::error_code ec;
  std::filesystem::create_directories(so.diff_storage_dir, ec);
  auto session = snapshot::Session::open(**module, {to}, so, ctx.out, &ctx.cancel);
  if (!session) return not_used("taking a snapshot to read the CBT map: " + session.error().message());
  auto& d = (*session)->devices().front();
  auto map = (*session)->read_cbt_map(d);
  const kernel::CbtInfo info = d.cbt;
  if (Status st = (*session)->close(); !st) {
    return fail(std::move(st).error().wrap("releasing the snapshot taken to read the CBT map of " + to));
  }
  if (!map) return not_used("reading the CBT map: " + map.error().message());
  cbt::Plan plan = cbt::plan_read(info, *map, *baseline, chunk_size);
  if (auto* full = std::get_if<cbt::FullRead>(&plan)) {
    return not_used(fmt::format("the CBT is not continuous since generation {}: {}", generation,
                                cbt::to_string(full->reason)));
  }
  const auto& changed = std::get<cbt::ChangedExtents>(plan);
  CbtRanges out;
  out.ranges.emplace();
  for (const auto& e : changed.extents) out.ranges->push_back({e.offset_bytes, e.length_bytes});
  out.changed_bytes = changed.changed_bytes;
  return out;
}

}  // namespace

Status cmd_restore_delta(Context& ctx, const RestoreOptions& opts) {
  const auto t0 = Clock::now();
  if (opts.device.empty()) return fail(ErrorCode::kInvalidArgument, "restore: --device NAME is required");
  if (opts.to.empty()) return fail(ErrorCode::kInvalidArgument, "restore: --to PATH is required");
  BLKVAULT_TRY_ASSIGN(auto repository, open_repository(ctx, /*write=*/false));
  BLKVAULT_TRY_ASSIGN(repo::GenerationId id, resolve_committed(*repository, opts.generation));
  BLKVAULT_TRY_ASSIGN(repo::DeviceImage image, find_device_image(*repository, id, opts.device));
  BLKVAULT_TRY_ASSIGN(repo::GenerationInfo info, repository->generation(id));
  const repo::DeviceRecord* record = info.device(image.device);
  if (record == nullptr) return fail(ErrorCode::kInternal, "the generation lost its device record");

  // The target's checks (mounted, too small, a symlink) apply; that it holds
  // data is the point of --delta.
  BLKVAULT_TRY_ASSIGN(RestoreTarget target, RestoreTarget::open(opts.to, image.size_bytes, /*force=*/true));
  BLKVAULT_TRY_ASSIGN(CbtRanges cbt, cbt_ranges(ctx, *record, id, opts.to, image.chunk_size));
  const std::string path = cbt.ranges ? "cbt" : "compare";

  TargetIo io(target);
  repo::DeltaOptions dopts;
  dopts.threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 16);
  dopts.compare_only = cbt.ranges;
  const int task = ctx.out.progress_begin(fmt::format("{} -> {} (delta)", opts.device, opts.to), image.size_bytes);
  std::atomic<uint64_t> done{0};
  auto stats = repository->restore_delta(image, io, io, dopts, &ctx.cancel,
                                         [&](uint64_t bytes) { ctx.out.progress_update(task, done += bytes); });
  ctx.out.progress_end(task);
  if (!stats) {
    Error e = std::move(stats).error();
    if (e.code() == ErrorCode::kCancelled || ctx.cancel.cancelled()) {
      return fail(ErrorCode::kCancelled,
                  fmt::format("restore to {} interrupted: it now holds a mix of its old contents and generation {}",
                              opts.to, id));
    }
    return fail(std::move(e).wrap(fmt::format("restoring {} of generation {} to {}", opts.device, id, opts.to)));
  }
  BLKVAULT_TRY(target.commit());
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto& s = *stats;
  std::string how = cbt.ranges ? fmt::format("the CBT marked {} as written since generation {}; {} not read",
                                             format_bytes(cbt.changed_bytes), id, format_bytes(s.bytes_skipped))
                               : "CBT not used: " + cbt.unused_reason;
  ctx.out.result(fmt::format(
      "restored {} as of generation {} to {} by delta ({} path): compared {}, wrote {} ({} of data, {} of zeros, "
      "{} chunk{}) of {} in {}\n  {}",
      opts.device, id, opts.to, path, format_bytes(s.bytes_compared), format_bytes(s.bytes_written + s.bytes_zeroed),
      format_bytes(s.bytes_written), format_bytes(s.bytes_zeroed), s.chunks_written, s.chunks_written == 1 ? "" : "s",
      format_bytes(image.size_bytes), format_duration(seconds), how));
  nlohmann::json j = {{"generation", id},
                      {"device", opts.device},
                      {"to", opts.to},
                      {"size_bytes", image.size_bytes},
                      {"delta", true},
                      {"path", path},
                      {"compared_bytes", s.bytes_compared},
                      {"skipped_bytes", s.bytes_skipped},
                      {"written_bytes", s.bytes_written},
                      {"zero_bytes", s.bytes_zeroed},
                      {"chunks_written", s.chunks_written},
                      {"duration_s", seconds}};
  j["cbt_changed_bytes"] = cbt.ranges ? nlohmann::json(cbt.changed_bytes) : nlohmann::json(nullptr);
  j["cbt_unused_reason"] = cbt.ranges ? nlohmann::json(nullptr) : nlohmann::json(cbt.unused_reason);
  ctx.out.result_json(j);
  return {};
}

}  // namespace blkvault::app
