#include "app/job_metrics.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "app/exit_codes.h"
#include "app/metrics.h"
#include "app/repo_access.h"
#include "cbt/changed_extents.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

using nlohmann::json;

bool valid_job_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The device's figures from its entry in the backup's --json object.
void record_device(MetricsFile& m, const Labels& dl, const json& d, double committed_s) {
  m.set("blkvault_device_last_success_timestamp_seconds", dl, committed_s);
  m.set("blkvault_device_last_success_duration_seconds", dl, d.value("duration_s", 0.0));
  m.set("blkvault_device_size_bytes", dl, static_cast<double>(d.value("size_bytes", uint64_t{0})));
  m.set("blkvault_device_changed_bytes", dl, static_cast<double>(d.value("changed_bytes", uint64_t{0})));
  m.set("blkvault_device_read_bytes", dl, static_cast<double>(d.value("read_bytes", uint64_t{0})));
  m.set("blkvault_device_new_bytes", dl, static_cast<double>(d.value("new_bytes", uint64_t{0})));
  m.set("blkvault_device_stored_bytes", dl, static_cast<double>(d.value("stored_bytes", uint64_t{0})));
  const bool full = d.value("mode", "") == "full";
  const std::string code = full ? full_read_reason_code(d["reason"].is_string() ? d["reason"].get<std::string>() : "")
                                : std::string();
  m.erase("blkvault_device_full_read", dl);
  Labels rl = dl;
  rl["reason"] = code;
  m.set("blkvault_device_full_read", rl, full ? 1 : 0);
  if (code == "cbt_generation_changed") m.add("blkvault_device_cbt_resets_total", dl, 1);
}

}  // namespace

std::string full_read_reason_code(std::string_view reason) {
  using cbt::FullReadReason;
  static const std::pair<FullReadReason, const char*> kCbt[] = {
      {FullReadReason::kGenerationChanged, "cbt_generation_changed"},
      {FullReadReason::kCapacityChanged, "capacity_changed"},
      {FullReadReason::kBlockSizeChanged, "block_size_changed"},
      {FullReadReason::kSnapNumberNotAdvanced, "snap_number_wrap"},
      {FullReadReason::kMapSizeMismatch, "map_size_inconsistent"},
  };
  if (reason == "--full") return "requested";
  // As app/cmd_backup.cpp words them.
  if (reason == "no earlier backup of this device") return "no_baseline";
  for (const auto& [r, code] : kCbt) {
    if (reason == cbt::to_string(r)) return code;
  }
  if (starts_with(reason, "CBT map unreadable")) return "cbt_map_unreadable";
  if (starts_with(reason, "the baseline recorded in generation ") && ends_with(reason, " is unreadable")) {
    return "baseline_unreadable";
  }
  if (starts_with(reason, "generation ") && ends_with(reason, " recorded no CBT baseline")) return "baseline_missing";
  return "other";
}

Result<RepositoryFigures> repository_figures(repo::Repository& repository) {
  RepositoryFigures f;
  BLKVAULT_TRY_ASSIGN(auto stats, repository.stats());
  BLKVAULT_TRY_ASSIGN(auto gens, repository.generations());
  f.size_bytes = stats.pack_bytes;
  f.packs = stats.packs;
  f.chunks = stats.chunks;
  for (const auto& g : gens) {
    if (g.state == repo::GenerationState::kComplete || g.state == repo::GenerationState::kPartial) ++f.committed;
    if (g.state == repo::GenerationState::kFailed) ++f.failed;
  }
  return f;
}

std::string job_metrics_path(const std::string& dir, std::string_view job) {
  return fmt::format("{}/blkvault_{}.prom", dir, job);
}

Status write_run_metrics(const std::string& dir, const RunMetrics& run) {
  const std::string path = job_metrics_path(dir, run.job);
  auto loaded = MetricsFile::load(path);
  if (!loaded) return fail(std::move(loaded).error().wrap("reading the previous metrics file " + path));
  MetricsFile& m = *loaded;
  const Labels jl = {{"job", run.job}};
  const bool ok = run.exit_status == 0;
  m.set("blkvault_last_run_timestamp_seconds", jl, run.finished_s);
  m.set("blkvault_last_run_duration_seconds", jl, run.duration_s);
  m.set("blkvault_last_run_success", jl, ok ? 1 : 0);
  m.set("blkvault_last_run_exit_status", jl, run.exit_status);
  for (const char* outcome : {"success", "failure"}) {
    m.add("blkvault_runs_total", {{"job", run.job}, {"outcome", outcome}}, (outcome == std::string_view("success")) == ok);
  }
  if (ok) {
    m.set("blkvault_last_success_timestamp_seconds", jl, run.finished_s);
    m.set("blkvault_last_success_duration_seconds", jl, run.duration_s);
    if (run.generation) m.set("blkvault_last_success_generation", jl, static_cast<double>(*run.generation));
  }

  // Devices that left the job leave the file; counters start at 0 so that
  // increase() sees their first event.
  m.erase_label_values("device", [&](const std::string& d) {
    return std::find(run.devices.begin(), run.devices.end(), d) != run.devices.end();
  });
  for (const auto& d : run.devices) {
    const Labels dl = {{"job", run.job}, {"device", d}};
    m.add("blkvault_device_cbt_resets_total", dl, 0);
    m.add("blkvault_snapshot_overflows_total", dl, 0);
  }
  if (run.backup != nullptr) {
    for (const DeviceReport& r : run.backup->reports) {
      if (r.snapshot_corrupted) m.add("blkvault_snapshot_overflows_total", {{"job", run.job}, {"device", r.name}}, 1);
    }
    const json& report = run.backup->report;
    if (report.is_object()) {
      for (const json& d : report.value("devices", json::array())) {
        if (!d.value("complete", false)) continue;
        record_device(m, {{"job", run.job}, {"device", d.value("name", "")}}, d, run.committed_s);
      }
    }
  }

  if (run.figures) {
    for (const char* name : {"blkvault_repository_size_bytes", "blkvault_repository_packs", "blkvault_repository_chunks",
                             "blkvault_repository_generations"}) {
      m.erase(name, jl);
    }
    const Labels rl = {{"job", run.job}, {"repository", run.repository}};
    m.set("blkvault_repository_size_bytes", rl, static_cast<double>(run.figures->size_bytes));
    m.set("blkvault_repository_packs", rl, static_cast<double>(run.figures->packs));
    m.set("blkvault_repository_chunks", rl, static_cast<double>(run.figures->chunks));
    m.set("blkvault_repository_generations", {{"job", run.job}, {"repository", run.repository}, {"state", "committed"}},
          static_cast<double>(run.figures->committed));
    m.set("blkvault_repository_generations", {{"job", run.job}, {"repository", run.repository}, {"state", "failed"}},
          static_cast<double>(run.figures->failed));
  }
  return m.publish(path);
}

std::string verify_metrics_path(const std::string& dir, std::string_view repository) {
  std::string name;
  for (char c : repository) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    name += keep ? c : '_';
  }
  const size_t first = name.find_first_not_of('_');
  name = first == std::string::npos ? "repository" : name.substr(first);
  return fmt::format("{}/blkvault_verify_{}.prom", dir, name);
}

Status write_verify_metrics(const std::string& dir, const VerifyMetrics& v) {
  const std::string path = verify_metrics_path(dir, v.repository);
  auto loaded = MetricsFile::load(path);
  if (!loaded) return fail(std::move(loaded).error().wrap("reading the previous metrics file " + path));
  MetricsFile& m = *loaded;
  const Labels l = {{"repository", v.repository}, {"data", v.data ? "true" : "false"}};
  m.set("blkvault_verify_last_timestamp_seconds", l, v.finished_s);
  m.set("blkvault_verify_last_duration_seconds", l, v.duration_s);
  m.set("blkvault_verify_damaged_chunks", l, static_cast<double>(v.damaged_chunks));
  m.set("blkvault_verify_problems", l, static_cast<double>(v.problems));
  return m.publish(path);
}

Status cmd_backup_with_metrics(Context& ctx, const BackupOptions& opts) {
  if (ctx.metrics_dir.empty()) return cmd_backup(ctx, opts);
  if (!valid_job_name(opts.metrics_job)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("--metrics-job {}: may only have letters, digits, '-' and '_' (at most 64)",
                            opts.metrics_job));
  }
  const auto t0 = std::chrono::steady_clock::now();
  BackupObservation observed;
  RunMetrics run;
  BackupOptions b = opts;
  b.observer = &observed;
  b.on_commit = [&](uint64_t generation) {
    run.generation = generation;
    run.committed_s = unix_now_seconds();
    if (opts.on_commit) opts.on_commit(generation);
  };
  std::unique_ptr<repo::Repository> opened;
  auto backup = [&]() -> Status {
    if (b.repository == nullptr) {
      BLKVAULT_TRY(require_repo_path(ctx));
      BLKVAULT_TRY_ASSIGN(opened, open_repository(ctx, /*write=*/true));
      b.repository = opened.get();
    }
    return cmd_backup(ctx, b);
  };
  Status st = backup();

  run.job = opts.metrics_job;
  run.devices = opts.devices;
  run.repository = ctx.repo;
  run.exit_status = st ? 0 : exit_status_for(st.error().code());
  run.finished_s = unix_now_seconds();
  run.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  run.backup = &observed;
  if (b.repository != nullptr) {
    auto figures = repository_figures(*b.repository);
    if (figures) {
      run.figures = *figures;
    } else {
      ctx.out.log(LogLevel::kWarning, "metrics: " + figures.error().message());
    }
  }
  if (Status w = write_run_metrics(ctx.metrics_dir, run); !w) ctx.out.log(LogLevel::kWarning, w.error().message());
  return st;
}

}  // namespace blkvault::app
