#include "app/schedule_commands.h"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "app/schedule_times.h"
#include "app/subprocess.h"
#include "common/file_io.h"

namespace blkvault::app {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr const char* kMarker = "# Written by 'blkvault schedule install'";

enum class Backend { kSystemd, kCron };

struct JobFiles {
  std::string service, timer, cron;
};

std::string under_root(const std::string& root, const std::string& path) {
  if (root.empty() || root == "/") return path;
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return r + path;
}

JobFiles files_of(const std::string& root, const std::string& job) {
  return {under_root(root, "/etc/systemd/system/blkvault-" + job + ".service"),
          under_root(root, "/etc/systemd/system/blkvault-" + job + ".timer"),
          under_root(root, "/etc/cron.d/blkvault-" + job)};
}

bool real_root(const std::string& root) { return root.empty() || fs::path(root) == fs::path("/"); }

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

Backend choose_backend(const ScheduleOptions& o) {
  if (o.systemd) return Backend::kSystemd;
  if (o.cron) return Backend::kCron;
  return exists(under_root(o.root, "/run/systemd/system")) ? Backend::kSystemd : Backend::kCron;
}

bool plain_word(const std::string& word) {
  return !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || std::string_view("/._-+:=,@").find(c) != std::string::npos;
  });
}

// One word of a cron command: quoted for /bin/sh, and every '%' escaped, since
// cron turns an unescaped '%' into a newline (crontab(5)) and removes the '\'.
std::string cron_word(const std::string& word) {
  if (plain_word(word)) return word;
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else if (c == '%') {
      out += "\\%";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// One word of a systemd ExecStart= line (systemd.service(5), "Command lines"):
// double-quoted with C escapes, and '%' and '$' doubled, as systemd expands
// specifiers and environment variables even inside quotes.
std::string systemd_word(const std::string& word) {
  if (plain_word(word)) return word;
  std::string out = "\"";
  for (char c : word) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '%' || c == '$') {
      out += c;
      out += c;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string run_command(std::string (*word)(const std::string&), const std::string& exe, const std::string& job,
                        const std::string& config_file) {
  return fmt::format("{} run {} --config {}", word(exe), word(job), word(config_file));
}

std::string header(const std::string& job, const std::string& config_file) {
  return fmt::format("{} for job {} of {}.\n# Change the schedule in that file, then run 'blkvault schedule install {}'"
                     " again;\n# 'blkvault schedule remove {}' removes this file.\n",
                     kMarker, job, config_file, job, job);
}

std::string service_text(const config::JobConfig& job, const std::string& exe, const std::string& config_file) {
  return header(job.name, config_file) +
         fmt::format("[Unit]\n"
                     "Description=blkvault backup job {}\n"
                     "Wants=local-fs.target\n"
                     "After=local-fs.target\n"
                     "\n"
                     "[Service]\n"
                     "Type=oneshot\n"
                     "Environment=PATH={}\n"
                     "ExecStart={}\n"
                     "Nice=10\n"
                     "IOSchedulingClass=best-effort\n"
                     "IOSchedulingPriority=7\n",
                     job.name, kPath, run_command(systemd_word, exe, job.name, config_file));
}

Result<std::vector<std::string>> calendar_specs(const config::JobConfig& job) {
  if (job.schedule->kind == config::Schedule::Kind::kCalendar) return std::vector<std::string>{job.schedule->text};
  return cron_to_calendar(job.schedule->cron);
}

std::string timer_text(const config::JobConfig& job, const std::vector<std::string>& specs,
                       const std::string& config_file) {
  std::string on_calendar;
  for (const auto& s : specs) on_calendar += "OnCalendar=" + s + "\n";
  return header(job.name, config_file) +
         fmt::format("[Unit]\n"
                     "Description=schedule of blkvault backup job {} ({})\n"
                     "\n"
                     "[Timer]\n"
                     "{}"
                     "Persistent=true\n"
                     "Unit=blkvault-{}.service\n"
                     "\n"
                     "[Install]\n"
                     "WantedBy=timers.target\n",
                     job.name, job.schedule->text, on_calendar, job.name);
}

Result<std::string> cron_fields(const config::JobConfig& job) {
  if (job.schedule->kind == config::Schedule::Kind::kCron) return job.schedule->text;
  auto c = calendar_to_cron(job.schedule->text);
  if (!c) {
    return fail(std::move(c).error().wrap(fmt::format("job {}", job.name)).with_code(ErrorCode::kInvalidArgument));
  }
  return c;
}

std::string cron_text(const config::JobConfig& job, const std::string& fields, const std::string& exe,
                      const std::string& config_file) {
  return header(job.name, config_file) +
         fmt::format("# Schedule: {}. Output on stdout is discarded: cron mails what goes to stderr, the failures.\n"
                     "SHELL=/bin/sh\n"
                     "PATH={}\n"
                     "{} root {} >/dev/null\n",
                     job.schedule->text, kPath, fields, run_command(cron_word, exe, job.name, config_file));
}

Status write_unit(const std::string& path, const std::string& text) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return fail(Error::from_errno("creating " + fs::path(path).parent_path().string(), ec.value()));
  return write_file_atomic(path, text, 0644);
}

// Removes `path` when it exists; true when it did.
Result<bool> remove_file(const std::string& path) {
  std::error_code ec;
  bool removed = fs::remove(path, ec);
  if (ec) return fail(Error::from_errno("removing " + path, ec.value()));
  return removed;
}

void systemctl(Context& ctx, const std::vector<std::string>& args) {
  if (!program_available("systemctl")) return;
  std::vector<std::string> argv = {"systemctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv);
  if (!r || r->exit_status != 0) {
    ctx.out.log(LogLevel::kWarning, fmt::format("systemctl {} failed", fmt::join(args, " ")));
  }
}

Result<std::vector<const config::JobConfig*>> selected_jobs(const config::Config& config, const std::string& name) {
  std::vector<const config::JobConfig*> jobs;
  if (name.empty()) {
    for (const auto& j : config.jobs) jobs.push_back(&j);
    return jobs;
  }
  const config::JobConfig* job = config.find_job(name);
  if (job == nullptr) {
    std::vector<std::string> names;
    for (const auto& j : config.jobs) names.push_back(j.name);
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("job {}: {} has no such job ({})", name, config.file,
                            names.empty() ? "it has none" : fmt::format("it has: {}", fmt::join(names, ", "))));
  }
  jobs.push_back(job);
  return jobs;
}

std::string absolute(const std::string& path) {
  std::error_code ec;
  auto p = fs::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

Status install(Context& ctx, const ScheduleOptions& o, const config::Config& config, const std::string& exe) {
  BLKVAULT_TRY_ASSIGN(auto jobs, selected_jobs(config, o.job));
  const Backend backend = choose_backend(o);
  const std::string config_file = absolute(config.file);
  std::string text;
  json installed = json::array();
  size_t count = 0;
  for (const auto* job : jobs) {
    if (!job->schedule) {
      if (!o.job.empty()) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("job {} has no schedule in {}: add 'schedule = \"daily\"' (or a cron expression) "
                                "to [job.{}]",
                                job->name, config.file, job->name));
      }
      text += fmt::format("{}: no schedule (run by hand only), nothing installed\n", job->name);
      continue;
    }
    const JobFiles f = files_of(o.root, job->name);
    json entry = {{"job", job->name}, {"schedule", job->schedule->text}};
    if (backend == Backend::kSystemd) {
      BLKVAULT_TRY_ASSIGN(auto specs, calendar_specs(*job));
      BLKVAULT_TRY(write_unit(f.service, service_text(*job, exe, config_file)));
      BLKVAULT_TRY(write_unit(f.timer, timer_text(*job, specs, config_file)));
      BLKVAULT_TRY_ASSIGN(bool had_cron, remove_file(f.cron));
      std::string on_calendar;
      for (const auto& s : specs) on_calendar += (on_calendar.empty() ? "" : ", ") + ("OnCalendar=" + s);
      text += fmt::format("{}: wrote {} and {} ({}){}\n", job->name, f.service, f.timer, on_calendar,
                          had_cron ? fmt::format("; removed {}", f.cron) : "");
      entry["kind"] = "systemd";
      entry["files"] = {f.service, f.timer};
      entry["on_calendar"] = specs;
      if (real_root(o.root)) {
        systemctl(ctx, {"daemon-reload"});
        systemctl(ctx, {"enable", "--now", "blkvault-" + job->name + ".timer"});
      }
    } else {
      BLKVAULT_TRY_ASSIGN(std::string fields, cron_fields(*job));
      BLKVAULT_TRY(write_unit(f.cron, cron_text(*job, fields, exe, config_file)));
      bool had_units = false;
      for (const auto& p : {f.timer, f.service}) {
        BLKVAULT_TRY_ASSIGN(bool removed, remove_file(p));
        had_units = had_units || removed;
      }
      text += fmt::format("{}: wrote {} ({}){}\n", job->name, f.cron, fields,
                          had_units ? fmt::format("; removed {} and {}", f.service, f.timer) : "");
      entry["kind"] = "cron";
      entry["files"] = {f.cron};
      entry["cron"] = fields;
      if (had_units && real_root(o.root)) systemctl(ctx, {"daemon-reload"});
    }
    installed.push_back(entry);
    ++count;
  }
  if (backend == Backend::kSystemd && count > 0 && !real_root(o.root)) {
    text += fmt::format("(--root {}: not enabled; on the target system run 'systemctl daemon-reload' and "
                        "'systemctl enable --now blkvault-JOB.timer')\n",
                        o.root);
  }
  ctx.out.result(text);
  ctx.out.result_json({{"installed", installed}});
  return {};
}

// Every job name that has a file of ours under `root`.
std::vector<std::string> installed_job_names(const std::string& root) {
  std::vector<std::string> names;
  for (const char* dir : {"/etc/systemd/system", "/etc/cron.d"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(under_root(root, dir), ec)) {
      std::string name = e.path().filename().string();
      if (name.rfind("blkvault-", 0) != 0) continue;
      name = name.substr(9);
      for (const char* suffix : {".service", ".timer"}) {
        const std::string s = suffix;
        if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
          name.resize(name.size() - s.size());
        }
      }
      auto text = read_file(e.path().string());
      if (!text || text->find(kMarker) == std::string::npos) continue;  // not ours
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status remove(Context& ctx, const ScheduleOptions& o) {
  std::vector<std::string> names = o.job.empty() ? installed_job_names(o.root) : std::vector<std::string>{o.job};
  std::string text;
  json removed = json::array();
  bool any_timer = false;
  for (const auto& name : names) {
    const JobFiles f = files_of(o.root, name);
    if (real_root(o.root) && exists(f.timer)) systemctl(ctx, {"disable", "--now", "blkvault-" + name + ".timer"});
    std::vector<std::string> gone;
    for (const auto& p : {f.timer, f.service, f.cron}) {
      BLKVAULT_TRY_ASSIGN(bool r, remove_file(p));
      if (r) gone.push_back(p);
    }
    any_timer = any_timer || std::find(gone.begin(), gone.end(), f.timer) != gone.end();
    text += gone.empty() ? fmt::format("{}: nothing installed\n", name)
                         : fmt::format("{}: removed {}\n", name, fmt::join(gone, ", "));
    removed.push_back({{"job", name}, {"files", gone}});
  }
  if (names.empty()) text = "no blkvault schedule is installed\n";
  if (any_timer && real_root(o.root)) systemctl(ctx, {"daemon-reload"});
  ctx.out.result(text);
  ctx.out.result_json({{"removed", removed}});
  return {};
}

std::string format_local(std::time_t t) {
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

// The next run times of a calendar spec, from `systemd-analyze calendar` (the
// judge of what a spec means), else through its cron translation.
std::vector<std::string> calendar_next_runs(const std::string& spec, size_t count, std::string* note) {
  if (program_available("systemd-analyze")) {
    auto r = run_process({"systemd-analyze", "calendar", "--iterations=" + std::to_string(count), spec},
                         /*capture_stdout=*/true);
    if (r && r->exit_status == 0) {
      std::vector<std::string> out;
      size_t start = 0;
      while (start < r->stdout_text.size()) {
        size_t end = r->stdout_text.find('\n', start);
        if (end == std::string::npos) end = r->stdout_text.size();
        std::string line = r->stdout_text.substr(start, end - start);
        // "    Next elapse: Thu 2026-11-26 02:30:00 CET" and "       Iter. #2: …"
        auto colon = line.find(": ");
        if (colon != std::string::npos &&
            (line.find("Next elapse") != std::string::npos || line.find("Iter. #") != std::string::npos)) {
          out.push_back(line.substr(colon + 2));
        }
        start = end + 1;
      }
      return out;
    }
  }
  auto cron = calendar_to_cron(spec);
  if (!cron) {
    *note = "next run times unknown: systemd-analyze is not available and " + cron.error().message();
    return {};
  }
  auto parsed = config::parse_cron(*cron);
  std::vector<std::string> out;
  if (parsed) {
    for (auto t : next_cron_times(*parsed, std::time(nullptr), count)) out.push_back(format_local(t));
  }
  return out;
}

Status show(Context& ctx, const ScheduleOptions& o, const config::Config& config, const std::string& exe) {
  BLKVAULT_TRY_ASSIGN(auto jobs, selected_jobs(config, o.job));
  const std::string config_file = absolute(config.file);
  std::string text;
  json arr = json::array();
  for (const auto* job : jobs) {
    const JobFiles f = files_of(o.root, job->name);
    json entry = {{"job", job->name}, {"schedule", nullptr}, {"installed", json::array()}, {"next_runs", json::array()}};
    if (!job->schedule) {
      text += fmt::format("{}: no schedule (run by hand only)\n", job->name);
      arr.push_back(entry);
      continue;
    }
    entry["schedule"] = job->schedule->text;
    text += fmt::format("{}: schedule {} ({})\n", job->name, job->schedule->text,
                        job->schedule->kind == config::Schedule::Kind::kCron ? "cron" : "systemd calendar");
    bool any = false;
    if (exists(f.timer)) {
      any = true;
      auto timer = read_file(f.timer);
      std::string on_calendar;
      if (timer) {
        size_t pos = 0;
        while ((pos = timer->find("\nOnCalendar=", pos)) != std::string::npos) {
          size_t end = timer->find('\n', pos + 1);
          on_calendar += (on_calendar.empty() ? "" : ", ") + timer->substr(pos + 1, end - pos - 1);
          pos = end;
        }
      }
      auto specs = calendar_specs(*job);
      bool current = timer && specs && *timer == timer_text(*job, *specs, config_file) && exists(f.service);
      text += fmt::format("  installed: systemd timer {} ({}){}\n", f.timer, on_calendar,
                          current ? "" : "; differs from the config: run 'blkvault schedule install' again");
      entry["installed"].push_back({{"kind", "systemd"}, {"file", f.timer}, {"up_to_date", current}});
    }
    if (exists(f.cron)) {
      any = true;
      auto cron = read_file(f.cron);
      std::string line;
      if (cron) {
        size_t pos = cron->find(" root ");
        if (pos != std::string::npos) {
          size_t start = cron->rfind('\n', pos) + 1;
          line = cron->substr(start, cron->find('\n', pos) - start);
        }
      }
      auto fields = cron_fields(*job);
      bool current = cron && fields && *cron == cron_text(*job, *fields, exe, config_file);
      text += fmt::format("  installed: cron {}: {}{}\n", f.cron, line,
                          current ? "" : "; differs from the config: run 'blkvault schedule install' again");
      entry["installed"].push_back({{"kind", "cron"}, {"file", f.cron}, {"up_to_date", current}});
    }
    if (!any) text += fmt::format("  not installed: 'blkvault schedule install {}'\n", job->name);
    std::vector<std::string> next;
    std::string note;
    if (job->schedule->kind == config::Schedule::Kind::kCron) {
      for (auto t : next_cron_times(job->schedule->cron, std::time(nullptr), o.count)) next.push_back(format_local(t));
    } else {
      next = calendar_next_runs(job->schedule->text, o.count, &note);
    }
    if (!note.empty()) text += "  " + note + "\n";
    for (const auto& n : next) text += "  next: " + n + "\n";
    entry["next_runs"] = next;
    arr.push_back(entry);
  }
  ctx.out.result(text);
  ctx.out.result_json({{"jobs", arr}});
  return {};
}

}  // namespace

Status cmd_schedule(Context& ctx, const ScheduleOptions& opts, const std::string& self_exe) {
  if (opts.cron && opts.systemd) return fail(ErrorCode::kInvalidArgument, "schedule: --cron and --systemd exclude each other");
  if (opts.action == "remove") return remove(ctx, opts);
  BLKVAULT_TRY_ASSIGN(config::Config config, config::load_file(opts.config_file));
  if (opts.action == "install") return install(ctx, opts, config, self_exe);
  return show(ctx, opts, config, self_exe);
}

void ScheduleCommands::add_to(CLI::App& cli) {
  schedule_ = cli.add_subcommand("schedule", "Install, remove or show the jobs' schedules (systemd timers or cron.d)");
  schedule_->require_subcommand(1);
  install_ = schedule_->add_subcommand("install", "Write the units (or cron file) that run each scheduled job");
  remove_ = schedule_->add_subcommand("remove", "Remove what install wrote");
  show_ = schedule_->add_subcommand("show", "Print the installed entries and the next run times");
  for (CLI::App* sub : {install_, remove_, show_}) {
    sub->add_option("JOB", opts_.job, "One job (default: every job)");
    sub->add_option("--config", opts_.config_file, "Configuration file");
    sub->add_option("--root", opts_.root, "Write under this directory instead of / (for tests and images)");
  }
  for (CLI::App* sub : {install_, show_}) {
    sub->add_flag("--cron", opts_.cron, "Use /etc/cron.d (default when systemd is not running)");
    sub->add_flag("--systemd", opts_.systemd, "Use systemd timers (default when systemd is running)");
  }
  show_->add_option("-n,--count", opts_.count, "How many next run times")->check(CLI::Range(1, 100));
}

Status ScheduleCommands::run(Context& ctx, const std::string& self_exe) {
  opts_.action = install_->parsed() ? "install" : remove_->parsed() ? "remove" : "show";
  return cmd_schedule(ctx, opts_, self_exe);
}

}  // namespace blkvault::app
