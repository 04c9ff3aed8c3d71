// `blkvault restore`: one device as of one generation, byte-identical, to a new
// sparse file or onto an existing file or block device (app/restore_target.h).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "app/commands.h"
#include "app/repo_access.h"
#include "app/restore_lookup.h"
#include "app/restore_target.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

using Clock = std::chrono::steady_clock;

// Lets the repository write into a RestoreTarget. Thread-safe as the target is.
class TargetSink final : public repo::RestoreSink {
 public:
  explicit TargetSink(RestoreTarget& target) : target_(target) {}
  Status write_at(uint64_t offset, std::span<const uint8_t> data) override { return target_.write_at(offset, data); }
  Status zero(uint64_t offset, uint64_t length) override { return target_.zero(offset, length); }

 private:
  RestoreTarget& target_;
};

}  // namespace

Status cmd_restore(Context& ctx, const RestoreOptions& opts) {
  const auto t0 = Clock::now();
  if (opts.device.empty()) return fail(ErrorCode::kInvalidArgument, "restore: --device NAME is required");
  if (opts.to.empty()) return fail(ErrorCode::kInvalidArgument, "restore: --to PATH is required");
  BLKVAULT_TRY_ASSIGN(auto repository, open_repository(ctx, /*write=*/false));
  BLKVAULT_TRY_ASSIGN(repo::GenerationId id, resolve_committed(*repository, opts.generation));
  BLKVAULT_TRY_ASSIGN(repo::DeviceImage image, find_device_image(*repository, id, opts.device));
  std::error_code ec;
  const bool existed = std::filesystem::symlink_status(opts.to, ec).type() != std::filesystem::file_type::not_found;
  BLKVAULT_TRY_ASSIGN(RestoreTarget target, RestoreTarget::open(opts.to, image.size_bytes, opts.force));

  TargetSink sink(target);
  const int task = ctx.out.progress_begin(fmt::format("{} -> {}", opts.device, opts.to), image.size_bytes);
  std::atomic<uint64_t> done{0};
  // Restore is mostly waiting: each worker reads a blob with one synchronous
  // pread and writes the chunk. Twice as many workers as cores keep reads in
  // flight while others decompress (measured in docs/BENCHMARKS.md).
  const size_t threads = std::clamp<size_t>(2 * std::thread::hardware_concurrency(), 4, 32);
  auto stats = repository->restore(image, sink, threads, &ctx.cancel,
                                   [&](uint64_t bytes) { ctx.out.progress_update(task, done += bytes); });
  ctx.out.progress_end(task);
  if (!stats) {
    Error e = std::move(stats).error();
    if (e.code() == ErrorCode::kCancelled || ctx.cancel.cancelled()) {
      return fail(ErrorCode::kCancelled, fmt::format("restore to {} interrupted: {}", opts.to,
                                                     existed ? "it now holds a partial image"
                                                             : "the partial file was removed"));
    }
    return fail(std::move(e).wrap(fmt::format("restoring {} of generation {} to {}", opts.device, id, opts.to)));
  }
  BLKVAULT_TRY(target.commit());
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  ctx.out.result(fmt::format("restored {} as of generation {} to {}: {} ({} of data, {} of zeros) in {} ({})",
                             opts.device, id, opts.to, format_bytes(image.size_bytes),
                             format_bytes(stats->bytes_written), format_bytes(stats->bytes_zero),
                             format_duration(seconds),
                             format_rate(seconds > 0 ? static_cast<double>(image.size_bytes) / seconds : 0)));
  ctx.out.result_json({{"generation", id},
                       {"device", opts.device},
                       {"to", opts.to},
                       {"size_bytes", image.size_bytes},
                       {"written_bytes", stats->bytes_written},
                       {"zero_bytes", stats->bytes_zero},
                       {"duration_s", seconds}});
  return {};
}

}  // namespace blkvault::app
