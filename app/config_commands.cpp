#include "app/config_commands.h"

#include <cstdio>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace blkvault::app {

void ConfigCommands::add_to(CLI::App& cli) {
  config_ = cli.add_subcommand("config", "Work with the job configuration file");
  config_->require_subcommand(1);
  check_ = config_->add_subcommand(
      "check", "Validate the configuration file: every problem with its file, line, column and key; "
               "a summary of the jobs when there is none");
  check_->add_option("--config", file_, "Configuration file");
}

namespace {

nlohmann::json command_json(const config::Command& c) {
  if (!c.argv.empty()) return {{"argv", c.argv}};
  if (!c.shell.empty()) return {{"shell", c.shell}};
  return nullptr;
}

nlohmann::json diff_storage_json(const config::DiffStorageConfig& d) {
  return {{"dir", d.dir},
          {"device", d.device.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.device)},
          {"size_bytes", d.size_bytes},
          {"limit_bytes", d.limit_bytes}};
}

nlohmann::json report_json(const config::ReportConfig& r) {
  return {{"log_file", r.log_file},
          {"syslog", r.syslog},
          {"on_failure", command_json(r.on_failure)},
          {"on_success", command_json(r.on_success)}};
}

nlohmann::json job_json(const config::JobConfig& job) {
  nlohmann::json j = {{"name", job.name},
                      {"devices", job.devices},
                      {"schedule", nullptr},
                      {"retention", nullptr},
                      {"hooks",
                       {{"pre", command_json(job.hooks.pre)},
                        {"post_snapshot", command_json(job.hooks.post_snapshot)},
                        {"post", command_json(job.hooks.post)},
                        {"timeout_s", job.hooks.timeout_s}}},
                      {"module", job.module_spec},
                      {"diff_storage", diff_storage_json(job.diff_storage)},
                      {"report", report_json(job.report)},
                      {"lock_wait_s", job.lock_wait_s},
                      {"cbt_audit_percent", job.cbt_audit_percent}};
  if (job.schedule) {
    j["schedule"] = {{"kind", job.schedule->kind == config::Schedule::Kind::kCron ? "cron" : "calendar"},
                     {"text", job.schedule->text}};
  }
  if (const auto& r = job.retention) {
    j["retention"] = {{"keep_last", r->keep_last},     {"keep_hourly", r->keep_hourly},
                      {"keep_daily", r->keep_daily},   {"keep_weekly", r->keep_weekly},
                      {"keep_monthly", r->keep_monthly}, {"keep_yearly", r->keep_yearly}, {"gc", r->gc}};
  }
  return j;
}

nlohmann::json config_json(const config::Config& c) {
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& job : c.jobs) jobs.push_back(job_json(job));
  return {{"repository",
           {{"path", c.repository.path},
            {"chunk_size_bytes", c.repository.chunk_size_bytes},
            {"compression_level", c.repository.compression_level},
            {"pack_size_bytes", c.repository.pack_size_bytes},
            {"password_file", c.repository.password_file},
            {"key_file", c.repository.key_file},
            {"credentials_file", c.repository.credentials_file}}},
          {"module", c.module_spec},
          {"state_dir", c.state_dir},
          {"lock_wait_s", c.lock_wait_s},
          {"cbt_audit_percent", c.cbt_audit_percent},
          {"diff_storage", diff_storage_json(c.diff_storage)},
          {"report", report_json(c.report)},
          {"metrics", {{"textfile_dir", c.metrics.textfile_dir.empty() ? nlohmann::json(nullptr)
                                                                       : nlohmann::json(c.metrics.textfile_dir)}}},
          {"jobs", jobs}};
}

std::string retention_text(const std::optional<config::RetentionConfig>& r) {
  if (!r) return "none (never pruned automatically)";
  std::string out = "keep";
  auto add = [&](const char* name, uint32_t n) {
    if (n > 0) out += fmt::format("{} {} {}", out == "keep" ? "" : ",", name, n);
  };
  add("last", r->keep_last);
  add("hourly", r->keep_hourly);
  add("daily", r->keep_daily);
  add("weekly", r->keep_weekly);
  add("monthly", r->keep_monthly);
  add("yearly", r->keep_yearly);
  if (!r->gc) out += " (prune only, no gc)";
  return out;
}

std::string summary_text(const config::Config& c) {
  const auto& repo = c.repository;
  std::string text = fmt::format("config {}: no problems\n", c.file);
  text += fmt::format("repository {} (chunks of {}, zstd level {}, packs of {}), module {}\n", repo.path,
                      format_bytes(repo.chunk_size_bytes), repo.compression_level, format_bytes(repo.pack_size_bytes),
                      c.module_spec);
  text += fmt::format("{} job{}{}\n", c.jobs.size(), c.jobs.size() == 1 ? "" : "s", c.jobs.empty() ? "" : ":");
  for (const auto& job : c.jobs) {
    text += fmt::format("  {}: {}\n", job.name, fmt::join(job.devices, ", "));
    if (job.schedule) {
      text += fmt::format("    schedule: {} ({})\n", job.schedule->text,
                          job.schedule->kind == config::Schedule::Kind::kCron ? "cron" : "systemd calendar");
    } else {
      text += "    schedule: none (run by hand)\n";
    }
    text += fmt::format("    retention: {}\n", retention_text(job.retention));
  }
  return text;
}

}  // namespace

Status ConfigCommands::run(Context& ctx) {
  BLKVAULT_TRY_ASSIGN(config::CheckResult checked, config::check_file(file_));
  nlohmann::json problems = nlohmann::json::array();
  for (const auto& p : checked.problems) {
    // Compiler-style diagnostics, one per line, before the one-line verdict.
    std::string line = config::to_string(p);
    std::fprintf(stderr, "%s\n", line.c_str());
    problems.push_back(
        {{"file", p.file}, {"line", p.line}, {"column", p.column}, {"key", p.key}, {"message", p.message}});
  }
  std::fflush(stderr);
  nlohmann::json j = {{"file", file_}, {"valid", checked.ok()}, {"problems", problems}};
  if (!checked.ok()) {
    ctx.out.result_json(j);
    size_t n = checked.problems.size();
    return fail(ErrorCode::kInvalidArgument, fmt::format("config {}: {} problem{}", file_, n, n == 1 ? "" : "s"));
  }
  j["config"] = config_json(checked.config);
  ctx.out.result_json(j);
  ctx.out.result(summary_text(checked.config));
  return {};
}

}  // namespace blkvault::app
