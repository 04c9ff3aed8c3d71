// `blkvault backup`: one snapshot over every device, then each device's changed
// extents (or all of it, with the reason) into one new generation.
//
// Order of events, and why:
//   module, repository (writer lock), each device's last good baseline
//   -> Session::open (snapshot created and taken; released on every path below)
//   -> begin_generation -> per device: CBT map, plan, the CBT audit of an
//      incremental (a missed write turns it into a full read), add_device,
//      read+put, check the session for a corruption event, set_mode/set_baseline
//   -> close the session -> commit (complete, or partial with --partial).
// A failure before commit aborts the generation: nothing becomes visible, and as
// baselines are read from the last good generation, none advances.
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <chrono>
#include <optional>
#include <thread>
#include <variant>

#include <boost/asio/thread_pool.hpp>
#include <fmt/format.h>

#include "app/backup_report.h"
#include "app/cbt_audit.h"
#include "app/commands.h"
#include "app/io_throttle.h"
#include "app/module_access.h"
#include "app/pipeline.h"
#include "app/repair_commands.h"
#include "app/repo_access.h"
#include "app/subprocess.h"
#include "cbt/changed_extents.h"
#include "repo/repository.h"
#include "snapshot/session.h"

namespace blkvault::app {
namespace {

using Clock = std::chrono::steady_clock;

// Test seam of the simulation: a shell command run once the snapshot is taken
// (writes during a backup, a signal mid-run). Honoured only with --module sim:DIR.
constexpr const char* kSimAfterTakeEnv = "BLKVAULT_SIM_AFTER_TAKE";

constexpr uint64_t kDefaultInitialStorage = 1ull << 30;

std::string reason_text(cbt::FullReadReason reason) {
  if (reason == cbt::FullReadReason::kNoBaseline) return "no earlier backup of this device";
  return cbt::to_string(reason);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

size_t worker_count() { return std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 16); }

// What a device's backup starts from: its last good generation's CBT baseline.
struct DeviceStart {
  std::optional<cbt::Baseline> baseline;
  std::string baseline_problem;  // why a recorded baseline was not usable
  // The last good generation: the parent an incremental builds on and the CBT
  // audit compares with, and the device's size in it.
  std::optional<repo::GenerationId> parent;
  uint64_t parent_size_bytes = 0;
  // Chunks its generations reference and no pack holds (repair packs moved
  // them aside): their ranges are read whatever the CBT says.
  std::vector<repo::MissingChunk> missing;
};

class BackupRun {
 public:
  // `throttle` (may be null: no --limit-read) paces every read of every device.
  BackupRun(Context& ctx, const BackupOptions& opts, repo::Repository& repository, snapshot::Session& session,
            repo::GenerationWriter& generation, ReadThrottle* throttle, uint64_t audit_seed)
      : ctx_(ctx), opts_(opts), repo_(repository), session_(session), gen_(generation), throttle_(throttle),
        pool_(worker_count()), audit_seed_(audit_seed) {}

  // Backs up one device. A failure is returned; the caller decides whether it
  // ends the run (kCancelled, or without --partial) or marks the device failed.
  // `writer` is set once the device is part of the generation.
  Status device(snapshot::SessionDevice& d, size_t position, const DeviceStart& start, DeviceReport& report,
                repo::DeviceWriter*& writer) {
    const auto t0 = Clock::now();
    const uint64_t chunk = repo_.config().chunk_size;
    const uint64_t size = d.reader->size_bytes();
    report.name = d.path;
    report.size_bytes = size;

    std::vector<ByteExtent> extents;
    std::vector<cbt::ByteExtent> changed_extents;  // what the CBT says changed, for the audit
    if (opts_.full) {
      report.reason = "--full";
    } else {
      auto map = session_.read_cbt_map(d);
      if (!map) {
        report.reason = "CBT map unreadable: " + map.error().message();
      } else {
        cbt::Plan plan = cbt::plan_read(d.cbt, *map, start.baseline, chunk);
        if (auto* changed = std::get_if<cbt::ChangedExtents>(&plan)) {
          report.incremental = true;
          report.changed_bytes = changed->changed_bytes;
          for (const auto& e : changed->extents) extents.push_back({e.offset_bytes, e.length_bytes});
          changed_extents = std::move(changed->extents);
        } else {
          auto reason = std::get<cbt::FullRead>(plan).reason;
          report.reason = start.baseline_problem.empty() || reason != cbt::FullReadReason::kNoBaseline
                              ? reason_text(reason)
                              : start.baseline_problem;
        }
      }
    }
    std::atomic<uint64_t> snapshot_bytes{0};
    // Every snapshot read, the audit's too, is counted and under --limit-read.
    ReadAt read = [&](uint64_t off, std::span<uint8_t> data) -> Status {
      BLKVAULT_TRY(d.reader->read_at(off, data));
      snapshot_bytes += data.size();
      return {};
    };
    if (throttle_ != nullptr) read = throttle_->wrap(std::move(read), ctx_.cancel);
    if (report.incremental && opts_.cbt_audit_percent > 0 && start.parent && start.parent_size_bytes == size) {
      if (Status st = audit(d, position, *start.parent, changed_extents, read, report); !st) {
        // Part of the generation all the same, so --partial can mark it failed.
        if (auto w = gen_.add_device(d.path, size, report.incremental)) writer = *w;
        return st;
      }
    }
    if (!report.incremental) {
      report.changed_bytes = size;
      extents = {ByteExtent{0, size}};
    }
    if (report.incremental && !start.missing.empty()) {
      extents = add_rereads(std::move(extents), start.missing, chunk, size);
    }

    BLKVAULT_TRY_ASSIGN(writer, gen_.add_device(d.path, size, report.incremental));
    writer->set_mode(report.incremental ? "incremental" : "full", report.reason, report.changed_bytes);
    if (report.audit) writer->set_cbt_audit(*report.audit);

    uint64_t total = 0;
    for (const auto& e : extents) total += e.length;
    const int task = ctx_.out.progress_begin(d.path, total);
    PipelineOptions popts;
    popts.chunk_size = chunk;
    popts.device_size = size;
    popts.threads = worker_count();
    auto result = run_pipeline(
        pool_, popts, extents, read,
        [&](uint64_t index, std::span<const uint8_t> data) { return writer->put(index, data); }, ctx_.cancel,
        [&](uint64_t done) { ctx_.out.progress_update(task, done); });
    ctx_.out.progress_end(task);
    report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report.snapshot_read_bytes = snapshot_bytes.load();
    ctx_.out.log(LogLevel::kDebug, fmt::format("{}: {} of the {} bytes read from {} bypassed the page cache (O_DIRECT)",
                                               d.path, d.reader->direct_bytes(), report.snapshot_read_bytes,
                                               d.reader->path()));

    // A corruption event explains a failed read better than the read's errno,
    // and fails the device even when its reads happened to succeed.
    if (auto broken = corruption_of(d, !result && result.error().code() != ErrorCode::kCancelled)) {
      report.snapshot_corrupted = true;
      return fail(std::move(*broken));
    }
    if (!result) return fail(std::move(result).error());
    writer->set_baseline(cbt::from_info(d.cbt).encode());
    return {};
  }

 private:
  // The CBT audit of an incremental (app/cbt_audit.h). A write the CBT missed
  // turns the device into a full read from the same snapshot, loudly.
  Status audit(const snapshot::SessionDevice& d, size_t position, repo::GenerationId parent,
               std::span<const cbt::ByteExtent> changed, const ReadAt& read, DeviceReport& report) {
    CbtAuditRequest req;
    req.device = d.path;
    req.size_bytes = report.size_bytes;
    req.parent = parent;
    req.percent = opts_.cbt_audit_percent;
    req.run_seed = audit_seed_;
    req.position = position;
    auto audited = run_cbt_audit(repo_, req, changed, read, ctx_.cancel);
    if (!audited) {
      // As after the pipeline: a corruption event explains a failed read best.
      if (auto broken = corruption_of(d, audited.error().code() != ErrorCode::kCancelled)) {
        report.snapshot_corrupted = true;
        return fail(std::move(*broken));
      }
      return fail(std::move(audited).error());
    }
    repo::CbtAudit a = std::move(*audited);
    if (a.missed_write()) {
      ctx_.out.warning(fmt::format("CBT audit of {}: {} differ from generation {} but the CBT map marks them "
                                   "unchanged: the CBT missed a write; reading {} fully",
                                   d.path, describe_ranges(a.missed), a.against, d.path));
      report.incremental = false;
      report.reason = "the CBT audit found a write the CBT map missed";
    }
    report.audit = std::move(a);
    return {};
  }

  Context& ctx_;
  // The session's record of a corruption event for `d`. The module reports it
  // asynchronously (the session's event thread polls), so after a failed read
  // it is given a moment to arrive.
  std::optional<Error> corruption_of(const snapshot::SessionDevice& d, bool read_failed) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(read_failed ? 500 : 0);
    for (;;) {
      if (auto broken = session_.device_failure(d.dev)) return broken;
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  const BackupOptions& opts_;
  repo::Repository& repo_;
  snapshot::Session& session_;
  repo::GenerationWriter& gen_;
  ReadThrottle* throttle_;
  boost::asio::thread_pool pool_;
  uint64_t audit_seed_;
};

Result<snapshot::SessionOptions> session_options(const Context& ctx, const BackupOptions& opts) {
  snapshot::SessionOptions s;
  s.diff_storage_dir = opts.diff_storage_dir.empty() ? ctx.state_dir + "/diff" : opts.diff_storage_dir;
  // Anything that exists and is not a directory is taken as a whole device given
  // over to difference storage; the module checks it is one (and unused).
  if (struct stat st {}; !opts.diff_storage_dir.empty() && ::stat(opts.diff_storage_dir.c_str(), &st) == 0 &&
                         !S_ISDIR(st.st_mode)) {
    s.diff_storage_device = opts.diff_storage_dir;
  }
  s.state_dir = ctx.state_dir;
  auto limit = parse_size(opts.diff_storage_limit);
  if (!limit) return fail(std::move(limit).error().wrap("--diff-storage-limit"));
  auto initial = opts.diff_storage_size.empty() ? Result<uint64_t>(std::min(kDefaultInitialStorage, *limit))
                                                : parse_size(opts.diff_storage_size);
  if (!initial) return fail(std::move(initial).error().wrap("--diff-storage-size"));
  if (*limit < (1ull << 20)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--diff-storage-limit {}: must be at least 1M", opts.diff_storage_limit));
  }
  if (*initial < (1ull << 20)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--diff-storage-size {}: must be at least 1M", opts.diff_storage_size));
  }
  if (*limit < *initial) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--diff-storage-limit {} is smaller than --diff-storage-size {}", opts.diff_storage_limit,
                            opts.diff_storage_size));
  }
  s.initial_bytes = *initial;
  s.limit_bytes = *limit;
  return s;
}

Result<DeviceStart> device_start(repo::Repository& repository, const std::string& device) {
  DeviceStart start;
  auto missing = repository.missing_chunks(device);
  if (!missing) return fail(std::move(missing).error().wrap("looking up the missing chunks of " + device));
  start.missing = std::move(*missing);
  auto last = repository.last_good(device);
  if (!last) return fail(std::move(last).error().wrap("looking up the last backup of " + device));
  if (*last) {
    start.parent = (*last)->generation;
    start.parent_size_bytes = (*last)->record.size_bytes;
  }
  if (*last && !(*last)->record.baseline.empty()) {
    auto decoded = cbt::Baseline::decode((*last)->record.baseline);
    if (decoded) {
      start.baseline = *decoded;
    } else {
      start.baseline_problem = fmt::format("the baseline recorded in generation {} is unreadable", (*last)->generation);
    }
  } else if (*last) {
    start.baseline_problem = fmt::format("generation {} recorded no CBT baseline", (*last)->generation);
  }
  return start;
}

Error cancelled_error(const CancelToken& cancel) {
  const int sig = cancel.signal_number();
  std::string name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
  return Error(ErrorCode::kCancelled,
               fmt::format("backup interrupted by {}: the snapshot was released and nothing was committed", name));
}

Status run_after_take_hook(const Context& ctx) {
  const char* cmd = std::getenv(kSimAfterTakeEnv);
  if (!cmd || !*cmd || !is_sim_module(ctx.module_spec)) return {};
  BLKVAULT_TRY_ASSIGN(auto r, run_process({"sh", "-c", cmd}));
  if (r.exit_status != 0) {
    return fail(ErrorCode::kIo, fmt::format("{} command exited with status {}", kSimAfterTakeEnv, r.exit_status));
  }
  return {};
}

// Reads and stores every device, then releases the snapshot. Returns an error
// when the run must end without a commit (a failure without --partial, every
// device failed, cancellation, the snapshot not released); with --partial a
// failed device is marked in the generation and in its report instead.
Status back_up_devices(Context& ctx, const BackupOptions& opts, repo::Repository& repository,
                       snapshot::Session& session, repo::GenerationWriter& gen, const std::vector<DeviceStart>& starts,
                       uint64_t audit_seed, std::vector<DeviceReport>& reports, ReadThrottle* throttle) {
  const size_t n = session.devices().size();
  reports.assign(n, DeviceReport{});
  std::vector<repo::DeviceWriter*> writers(n, nullptr);
  auto device_failed = [&](size_t i, Error e) -> Status {
    if (e.code() == ErrorCode::kCancelled || ctx.cancel.cancelled() || !opts.partial || !writers[i]) {
      return fail(std::move(e));
    }
    writers[i]->fail(e);
    reports[i].error = e.message();
    return {};
  };
  {
    BackupRun run(ctx, opts, repository, session, gen, throttle, audit_seed);
    for (size_t i = 0; i < n; ++i) {
      snapshot::SessionDevice& d = session.devices()[i];
      if (Status st = run.device(d, i, starts[i], reports[i], writers[i]); !st) {
        BLKVAULT_TRY(device_failed(i, std::move(st).error().wrap("backup of " + d.path)));
      }
    }
  }
  if (Status st = session.close(); !st) return fail(std::move(st).error().wrap("releasing the snapshot"));
  // A corruption reported after a device's reads still spoils what was read.
  for (size_t i = 0; i < n; ++i) {
    auto broken = session.device_failure(session.devices()[i].dev);
    if (broken && reports[i].error.empty()) {
      reports[i].snapshot_corrupted = true;
      BLKVAULT_TRY(device_failed(i, std::move(*broken).wrap("backup of " + reports[i].name)));
    }
  }
  if (std::all_of(reports.begin(), reports.end(), [](const DeviceReport& r) { return !r.error.empty(); })) {
    std::string why;
    for (const auto& r : reports) why += (why.empty() ? "" : "; ") + r.error;
    return fail(ErrorCode::kIo, "every device failed, nothing was committed: " + why);
  }
  return {};
}

// A partial generation is kept, but the run did not do all it was asked: one
// line naming what failed, exit status 1.
Status partial_failure(const repo::GenerationInfo& info, const std::vector<DeviceReport>& reports) {
  std::string failed;
  for (const auto& r : reports) {
    if (!r.error.empty()) failed += (failed.empty() ? "" : "; ") + r.error;
  }
  if (failed.empty()) return {};
  return fail(ErrorCode::kIo, fmt::format("generation {} committed as partial: {}", info.id, failed));
}

// The run did all it was asked, but the CBT lied about some device: exit
// status 7 (kExitCbtAudit), one line naming every such device.
Status audit_failure(const repo::GenerationInfo& info, const std::vector<DeviceReport>& reports) {
  std::string devices;
  for (const auto& r : reports) {
    if (!r.error.empty() || !r.audit || !r.audit->missed_write()) continue;
    devices += fmt::format("{}{} ({})", devices.empty() ? "" : "; ", r.name, describe_ranges(r.audit->missed));
  }
  if (devices.empty()) return {};
  return fail(ErrorCode::kCbtAudit,
              fmt::format("generation {} committed, but the CBT audit found a write the CBT map missed on {}; the "
                          "device was read fully",
                          info.id, devices));
}

uint64_t random_seed() {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, 0) != sizeof seed) {
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           (static_cast<uint64_t>(::getpid()) << 32);
  }
  return seed;
}

}  // namespace

Status cmd_backup(Context& ctx, const BackupOptions& opts) {
  const auto t0 = Clock::now();
  if (opts.devices.empty()) return fail(ErrorCode::kInvalidArgument, "backup: no DEVICE given");
  BLKVAULT_TRY_ASSIGN(snapshot::SessionOptions session_opts, session_options(ctx, opts));
  std::unique_ptr<repo::Repository> opened;
  repo::Repository* repository = opts.repository;
  if (repository == nullptr) BLKVAULT_TRY(require_repo_path(ctx));
  BLKVAULT_TRY_ASSIGN(BackupLimits limits, backup_limits(ctx, opts));
  BLKVAULT_TRY_ASSIGN(auto module, open_module_for_snapshots(ctx));
  if (repository == nullptr) {
    Context limited = ctx;  // the upload limit lives in the storage layer
    limited.upload_limiter = limits.upload;
    BLKVAULT_TRY_ASSIGN(opened, open_repository_for_backup(limited));
    repository = opened.get();
  }

  std::vector<DeviceStart> starts;
  for (const auto& device : opts.devices) {
    BLKVAULT_TRY_ASSIGN(DeviceStart start, device_start(*repository, device));
    starts.push_back(std::move(start));
  }

  auto session_r = snapshot::Session::open(*module, opts.devices, session_opts, ctx.out, &ctx.cancel);
  if (!session_r) {
    if (ctx.cancel.cancelled()) return fail(cancelled_error(ctx.cancel));
    return fail(std::move(session_r).error().wrap("taking the snapshot"));
  }
  snapshot::Session& session = **session_r;
  // From here on every return path releases the snapshot: explicitly below, or
  // by the Session destructor as the backstop.

  // Ends the run without committing: the generation is recorded as failed and
  // the snapshot released; the error returned says why.
  std::unique_ptr<repo::GenerationWriter> gen;
  auto give_up = [&](Error why) -> Status {
    if (ctx.cancel.cancelled()) why = cancelled_error(ctx.cancel);
    if (gen) gen->abort(why);
    if (Status st = session.close(); !st) {  // still one line: both causes in it
      why = Error(why.code(), why.message() + "; releasing the snapshot also failed: " + st.error().message(),
                  why.sys_errno());
    }
    return fail(std::move(why));
  };

  if (opts.after_snapshot) {
    if (Status st = opts.after_snapshot(); !st) return give_up(std::move(st).error());
  }

  auto gen_r = repository->begin_generation(host_name(), BLKVAULT_VERSION);
  if (!gen_r) return give_up(std::move(gen_r).error().wrap("starting a generation"));
  gen = std::move(*gen_r);
  if (Status st = run_after_take_hook(ctx); !st) return give_up(std::move(st).error());

  const uint64_t audit_seed = opts.cbt_audit_seed ? *opts.cbt_audit_seed : random_seed();
  std::vector<DeviceReport> reports;
  Status devices_st =
      back_up_devices(ctx, opts, *repository, session, *gen, starts, audit_seed, reports, limits.read.get());
  if (opts.observer) opts.observer->reports = reports;
  if (!devices_st) return give_up(std::move(devices_st).error());
  if (ctx.cancel.cancelled()) return give_up(cancelled_error(ctx.cancel));

  auto info = gen->commit(opts.partial);
  if (!info) return fail(std::move(info).error().wrap(fmt::format("committing generation {}", gen->id())));
  if (opts.on_commit) opts.on_commit(info->id);
  for (size_t i = 0; i < opts.devices.size(); ++i) {
    report_rereads(ctx.out, *repository, *info, opts.devices[i], starts[i].missing);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  nlohmann::json report = print_backup_report(ctx.out, *info, reports, seconds,
                                              LimitsReport{limits.read_json(), limits.upload_json(), limits.text_lines()});
  if (opts.observer) opts.observer->report = std::move(report);
  BLKVAULT_TRY(partial_failure(*info, reports));
  return audit_failure(*info, reports);
}

}  // namespace blkvault::app
